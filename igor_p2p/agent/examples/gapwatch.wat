;; gapwatch: watches its own life. On the first tick after loading it reads resume_reason and
;; resume_gap_ns; every tick it reads clock_now.
;; State (32 bytes, little-endian u64s): ticks, resumes (reason != 0), largest gap ns,
;; last clock_now.
(module
  (import "igor" "clock_now" (func $clock_now (result i64)))
  (import "igor" "resume_reason" (func $resume_reason (result i32)))
  (import "igor" "resume_gap_ns" (func $resume_gap_ns (result i64)))
  (import "igor" "log_emit" (func $log_emit (param i32 i32)))
  (memory (export "memory") 1)
  (global $ticks (mut i64) (i64.const 0))
  (global $resumes (mut i64) (i64.const 0))
  (global $max_gap (mut i64) (i64.const 0))
  (global $last_clock (mut i64) (i64.const 0))
  (global $checked (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 64) "gapwatch: resumed")

  (func (export "agent_init"))

  (func (export "agent_tick") (result i32)
    (local $gap i64)
    (if (i32.eqz (global.get $checked))
      (then
        (global.set $checked (i32.const 1))
        (if (i32.ne (call $resume_reason) (i32.const 0))
          (then
            (global.set $resumes (i64.add (global.get $resumes) (i64.const 1)))
            (call $log_emit (i32.const 64) (i32.const 17))))
        (local.set $gap (call $resume_gap_ns))
        (if (i64.gt_s (local.get $gap) (global.get $max_gap))
          (then (global.set $max_gap (local.get $gap))))))
    (global.set $ticks (i64.add (global.get $ticks) (i64.const 1)))
    (global.set $last_clock (call $clock_now))
    (i32.const 0))

  (func (export "agent_checkpoint") (result i32)
    (i64.store (i32.const 0) (global.get $ticks))
    (i64.store (i32.const 8) (global.get $resumes))
    (i64.store (i32.const 16) (global.get $max_gap))
    (i64.store (i32.const 24) (global.get $last_clock))
    (i32.const 32))

  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))

  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 32))
      (then
        (global.set $ticks (i64.load (local.get $ptr)))
        (global.set $resumes (i64.load offset=8 (local.get $ptr)))
        (global.set $max_gap (i64.load offset=16 (local.get $ptr)))
        (global.set $last_clock (i64.load offset=24 (local.get $ptr))))))

  (func (export "malloc") (param $n i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $ptr) (local.get $n)) (i32.const 65536))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $n)))
    (local.get $ptr))
)
