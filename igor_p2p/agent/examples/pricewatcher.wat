;; pricewatcher: every tick, GET a price (plain-text decimal) from a local feed and remember it.
;; Uses http (the feed), clock and rand (a timestamp and a nonce per tick), log, and, on the
;; first tick after it is loaded, effect_unresolved (requests a crash left without an outcome).
;; The URL is the NUL-terminated string at offset 256 (run the feed with
;; `python -m igor_p2p.effects.price_feed --port 8787`; docs/effects.md).
;; State (64 bytes, little-endian): ticks, last price, requests answered 200, requests failed,
;; last clock_now, last nonce, effects reported unresolved, last http result (i64).
(module
  (import "igor" "http_request"
    (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "igor" "effect_unresolved" (func $unresolved (param i32 i32) (result i32)))
  (import "igor" "clock_now" (func $clock_now (result i64)))
  (import "igor" "rand_bytes" (func $rand_bytes (param i32 i32) (result i32)))
  (import "igor" "log_emit" (func $log_emit (param i32 i32)))
  (memory (export "memory") 1)
  (global $checked (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 16384))
  ;; 0..64 state; 256 URL; 1024 method; 1040 request headers; 2048 response (cap 1024);
  ;; 3200 log line; 3584 unresolved list (cap 512)
  (data (i32.const 256) "http://127.0.0.1:8787/price\00")
  (data (i32.const 1024) "GET")
  (data (i32.const 1040) "Accept: text/plain\n")
  (data (i32.const 3200) "price ")

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $scan
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $scan)))
    (local.get $n))

  ;; decimal digits at [p, p+len) → u64 (stops at the first non-digit)
  (func $parse (param $p i32) (param $len i32) (result i64)
    (local $i i32) (local $c i32) (local $v i64)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (br_if $done (i32.gt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 9)))
        (local.set $v (i64.add (i64.mul (local.get $v) (i64.const 10))
                               (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $v))

  ;; writes the decimal of v at p, returns its length
  (func $itoa (param $p i32) (param $v i64) (result i32)
    (local $n i32) (local $i i32) (local $t i32)
    (loop $digit
      (i32.store8 (i32.add (local.get $p) (local.get $n))
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    ;; reverse in place
    (local.set $i (i32.const 0))
    (block $done
      (loop $swap
        (br_if $done (i32.ge_s (local.get $i) (i32.sub (i32.sub (local.get $n) (i32.const 1)) (local.get $i))))
        (local.set $t (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (i32.store8 (i32.add (local.get $p) (local.get $i))
          (i32.load8_u (i32.add (local.get $p) (i32.sub (i32.sub (local.get $n) (i32.const 1)) (local.get $i)))))
        (i32.store8 (i32.add (local.get $p) (i32.sub (i32.sub (local.get $n) (i32.const 1)) (local.get $i)))
          (local.get $t))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $swap)))
    (local.get $n))

  (func $bump (param $at i32)
    (i64.store (local.get $at) (i64.add (i64.load (local.get $at)) (i64.const 1))))

  (func (export "agent_init"))

  (func (export "agent_tick") (result i32)
    (local $status i32)
    (if (i32.eqz (global.get $checked))
      (then
        (global.set $checked (i32.const 1))
        (if (i32.gt_s (call $unresolved (i32.const 3584) (i32.const 512)) (i32.const 0))
          (then
            (i64.store (i32.const 48)
              (i64.add (i64.load (i32.const 48)) (i64.extend_i32_u (i32.load (i32.const 3584)))))))))
    (i64.store (i32.const 32) (call $clock_now))
    (drop (call $rand_bytes (i32.const 40) (i32.const 8)))
    (local.set $status
      (call $http
        (i32.const 1024) (i32.const 3)
        (i32.const 256) (call $strlen (i32.const 256))
        (i32.const 1040) (i32.const 19)
        (i32.const 0) (i32.const 0)
        (i32.const 2048) (i32.const 1024)))
    (i64.store (i32.const 56) (i64.extend_i32_s (local.get $status)))
    (if (i32.eq (local.get $status) (i32.const 200))
      (then
        (i64.store (i32.const 8) (call $parse (i32.const 2052) (i32.load (i32.const 2048))))
        (call $bump (i32.const 16))
        (call $log_emit (i32.const 3200)
          (i32.add (i32.const 6) (call $itoa (i32.const 3206) (i64.load (i32.const 8))))))
      (else (call $bump (i32.const 24))))
    (call $bump (i32.const 0))
    (i32.const 0))

  (func (export "agent_checkpoint") (result i32) (i32.const 64))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))

  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 64))
      (then (memory.copy (i32.const 0) (local.get $ptr) (i32.const 64)))))

  (func (export "malloc") (param $n i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $ptr) (local.get $n)) (i32.const 65536))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $n)))
    (local.get $ptr))
)
