;; counter: a u64 counter incremented each tick.
;; State: 8 bytes, the counter in little-endian. Logs "counter: tick" every 10th tick.
(module
  (import "igor" "log_emit" (func $log_emit (param i32 i32)))
  (memory (export "memory") 1)
  (global $count (mut i64) (i64.const 0))
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 64) "counter: tick")

  (func (export "agent_init"))

  (func (export "agent_tick") (result i32)
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (if (i64.eqz (i64.rem_u (global.get $count) (i64.const 10)))
      (then (call $log_emit (i32.const 64) (i32.const 13))))
    (i32.const 0))

  (func (export "agent_checkpoint") (result i32)
    (i64.store (i32.const 0) (global.get $count))
    (i32.const 8))

  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))

  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 8))
      (then (global.set $count (i64.load (local.get $ptr))))))

  ;; bump allocator; grows memory as needed, returns 0 when it cannot.
  (func (export "malloc") (param $n i32) (result i32)
    (local $ptr i32) (local $end i32) (local $need i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $n)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then (return (i32.const 0))))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (local.set $need
          (i32.sub
            (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
            (memory.size)))
        (if (i32.eq (memory.grow (local.get $need)) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))
)
