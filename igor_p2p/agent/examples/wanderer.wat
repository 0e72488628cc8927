;; wanderer: a counter that calls migrate_request every 5th tick (hint "wander").
;; State: 8 bytes, the counter in little-endian. Logs "wanderer: moving" when it asks.
(module
  (import "igor" "log_emit" (func $log_emit (param i32 i32)))
  (import "igor" "migrate_request" (func $migrate_request (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $count (mut i64) (i64.const 0))
  (global $heap (mut i32) (i32.const 4096))
  (global $last_rc (export "last_migrate_rc") (mut i32) (i32.const 0))
  (data (i32.const 64) "wanderer: moving")
  (data (i32.const 128) "wander")

  (func (export "agent_init"))

  (func (export "agent_tick") (result i32)
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (if (i64.eqz (i64.rem_u (global.get $count) (i64.const 5)))
      (then
        (call $log_emit (i32.const 64) (i32.const 16))
        (global.set $last_rc (call $migrate_request (i32.const 128) (i32.const 6)))))
    (i32.const 0))

  (func (export "agent_checkpoint") (result i32)
    (i64.store (i32.const 0) (global.get $count))
    (i32.const 8))

  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))

  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 8))
      (then (global.set $count (i64.load (local.get $ptr))))))

  (func (export "malloc") (param $n i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $ptr) (local.get $n)) (i32.const 65536))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $n)))
    (local.get $ptr))
)
