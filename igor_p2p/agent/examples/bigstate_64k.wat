;; bigstate_64k: a checkpoint of exactly 65536 bytes (for benchmarks).
;; The state region starts at 65536. agent_init grows memory to hold it; each tick stores the
;; tick count (u64 LE) in the first 8 bytes of the region and bumps one byte further in.
;; malloc is a bump allocator placed after the region (needed to resume 65536 bytes).
(module
  (memory (export "memory") 1)
  (global $size i32 (i32.const 65536))
  (global $ticks (mut i64) (i64.const 0))
  (global $heap (mut i32) (i32.const 0))

  (func $ensure (param $end i32) (result i32)
    (local $need i32)
    (if (i32.le_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (return (i32.const 1))))
    (local.set $need
      (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
               (memory.size)))
    (i32.ne (memory.grow (local.get $need)) (i32.const -1)))

  (func (export "agent_init")
    (if (i32.eqz (call $ensure (i32.add (i32.const 65536) (global.get $size))))
      (then unreachable))
    (global.set $heap (i32.add (i32.const 65536) (global.get $size))))

  (func (export "agent_tick") (result i32)
    (local $pos i32)
    (global.set $ticks (i64.add (global.get $ticks) (i64.const 1)))
    (i64.store (i32.const 65536) (global.get $ticks))
    (local.set $pos
      (i32.add (i32.const 65544)
        (i32.rem_u (i32.wrap_i64 (i64.mul (global.get $ticks) (i64.const 4099)))
                   (i32.sub (global.get $size) (i32.const 8)))))
    (i32.store8 (local.get $pos) (i32.add (i32.load8_u (local.get $pos)) (i32.const 1)))
    (i32.const 0))

  (func (export "agent_checkpoint") (result i32) (global.get $size))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 65536))

  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.eq (local.get $len) (global.get $size))
      (then
        (memory.copy (i32.const 65536) (local.get $ptr) (local.get $len))
        (global.set $ticks (i64.load (i32.const 65536))))))

  (func (export "malloc") (param $n i32) (result i32)
    (local $ptr i32) (local $end i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $n)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then (return (i32.const 0))))
    (if (i32.eqz (call $ensure (local.get $end))) (then (return (i32.const 0))))
    (global.set $heap (local.get $end))
    (local.get $ptr))
)
