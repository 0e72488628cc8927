;; tinygo: the import and export set of a Go Igor agent built with TinyGo 0.40.1
;; (`tinygo build -target=wasi` on Go Igor's SDK), written by hand in WAT.
;;
;; Imports: wasi_snapshot_preview1 fd_write, proc_exit, clock_time_get, args_sizes_get,
;; args_get, random_get (TinyGo's runtime) and igor clock_now, rand_bytes, log_emit (the SDK).
;; Exports: memory (no maximum), malloc, free, calloc, realloc, _start, agent_init,
;; agent_tick () -> i32, agent_checkpoint, agent_checkpoint_ptr, agent_resume and the five
;; asyncify_* functions. No start section and no _initialize, like TinyGo's output.
;;
;; Behaviour: a u64 counter (the state: 8 bytes, little-endian). Every tick prints
;; "tick N" on stdout (fd_write, three iovecs), reads both clocks and both entropy sources, and
;; every 5th tick logs "tinygo: N ticks" with log_emit. agent_resume prints "resumed at tick N"
;; on stderr. Any failing WASI call makes it exit (proc_exit) with code 70 + which call.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "igor" "clock_now" (func $clock_now (result i64)))
  (import "igor" "rand_bytes" (func $rand_bytes (param i32 i32) (result i32)))
  (import "igor" "log_emit" (func $log_emit (param i32 i32)))

  ;; Memory map: 0 counter (checkpoint bytes) | 16 wasi clock | 24 igor clock | 32 wasi random
  ;; | 40 igor random | 48 argc | 52 argv size | 64 iovecs (3 × 8) | 96 nwritten
  ;; | 100..128 digits (written backwards from 128) | 256 text | 4096 heap.
  (memory (export "memory") 2)
  (global $count (mut i64) (i64.const 0))
  (global $heap (mut i32) (i32.const 4096))
  (global $asyncify_state (mut i32) (i32.const 0))
  (global $asyncify_data (mut i32) (i32.const 0))
  (data (i32.const 256) "tick ")
  (data (i32.const 261) "\n")
  (data (i32.const 272) "resumed at tick ")
  (data (i32.const 304) "tinygo: ")
  (data (i32.const 312) " ticks")

  ;; Decimal digits of $v, written backwards so they end at 128; returns the first byte.
  (func $utoa (param $v i64) (result i32)
    (local $p i32)
    (local.set $p (i32.const 128))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digits (i64.ne (local.get $v) (i64.const 0))))
    (local.get $p))

  ;; fd_write(fd, [prefix, digits of $v, "\n"]); exits with $code if it fails.
  (func $print (param $fd i32) (param $prefix i32) (param $prefix_len i32) (param $v i64)
                (param $code i32)
    (local $digits i32)
    (local.set $digits (call $utoa (local.get $v)))
    (i32.store (i32.const 64) (local.get $prefix))
    (i32.store (i32.const 68) (local.get $prefix_len))
    (i32.store (i32.const 72) (local.get $digits))
    (i32.store (i32.const 76) (i32.sub (i32.const 128) (local.get $digits)))
    (i32.store (i32.const 80) (i32.const 261))
    (i32.store (i32.const 84) (i32.const 1))
    (if (call $fd_write (local.get $fd) (i32.const 64) (i32.const 3) (i32.const 96))
      (then (call $proc_exit (local.get $code)))))

  (func $check (param $errno i32) (param $code i32)
    (if (local.get $errno) (then (call $proc_exit (local.get $code)))))

  (func (export "_start")
    (call $proc_exit (i32.const 0)))

  (func (export "agent_init")
    (call $check (call $args_sizes_get (i32.const 48) (i32.const 52)) (i32.const 71))
    (call $check (call $args_get (i32.const 4096) (i32.const 4096)) (i32.const 72))
    ;; Go Igor gives no arguments either: exit 73 if the host passed any.
    (if (i32.or (i32.load (i32.const 48)) (i32.load (i32.const 52)))
      (then (call $proc_exit (i32.const 73)))))

  (func (export "agent_tick") (result i32)
    (local $d i32)
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (call $check (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 16)) (i32.const 74))
    (i64.store (i32.const 24) (call $clock_now))
    (call $check (call $random_get (i32.const 32) (i32.const 8)) (i32.const 75))
    (call $check (call $rand_bytes (i32.const 40) (i32.const 8)) (i32.const 76))
    (call $print (i32.const 1) (i32.const 256) (i32.const 5) (global.get $count) (i32.const 77))
    (if (i64.eqz (i64.rem_u (global.get $count) (i64.const 5)))
      (then
        ;; "tinygo: " + digits + " ticks", assembled at 512
        (local.set $d (call $utoa (global.get $count)))
        (memory.copy (i32.const 512) (i32.const 304) (i32.const 8))
        (memory.copy (i32.const 520) (local.get $d) (i32.sub (i32.const 128) (local.get $d)))
        (memory.copy
          (i32.add (i32.const 520) (i32.sub (i32.const 128) (local.get $d)))
          (i32.const 312) (i32.const 6))
        (call $log_emit (i32.const 512)
          (i32.add (i32.const 14) (i32.sub (i32.const 128) (local.get $d))))))
    (i32.const 0))

  (func (export "agent_checkpoint") (result i32)
    (i64.store (i32.const 0) (global.get $count))
    (i32.const 8))

  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))

  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 8))
      (then
        (global.set $count (i64.load (local.get $ptr)))
        (call $print (i32.const 2) (i32.const 272) (i32.const 16) (global.get $count)
          (i32.const 78)))))

  ;; TinyGo's allocator, reduced to a bump allocator that grows memory; 0 when it cannot.
  (func $malloc (export "malloc") (param $n i32) (result i32)
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

  (func (export "free") (param $ptr i32))

  (func (export "calloc") (param $n i32) (param $size i32) (result i32)
    (call $malloc (i32.mul (local.get $n) (local.get $size))))

  (func (export "realloc") (param $ptr i32) (param $size i32) (result i32)
    (local $new i32) (local $old_len i32)
    (local.set $new (call $malloc (local.get $size)))
    (if (i32.and (i32.ne (local.get $new) (i32.const 0)) (i32.ne (local.get $ptr) (i32.const 0)))
      (then
        ;; bump allocation: everything from $ptr to the new block belonged to the old one
        (local.set $old_len (i32.sub (local.get $new) (local.get $ptr)))
        (memory.copy (local.get $new) (local.get $ptr)
          (select (local.get $size) (local.get $old_len)
            (i32.lt_u (local.get $size) (local.get $old_len))))))
    (local.get $new))

  (func (export "asyncify_start_unwind") (param $data i32)
    (global.set $asyncify_state (i32.const 1))
    (global.set $asyncify_data (local.get $data)))
  (func (export "asyncify_stop_unwind")
    (global.set $asyncify_state (i32.const 0)))
  (func (export "asyncify_start_rewind") (param $data i32)
    (global.set $asyncify_state (i32.const 2))
    (global.set $asyncify_data (local.get $data)))
  (func (export "asyncify_stop_rewind")
    (global.set $asyncify_state (i32.const 0)))
  (func (export "asyncify_get_state") (result i32)
    (global.get $asyncify_state))
)
