;; buyer: pays for its data, then fetches it. Every tick it pays 1,000 µ to "price-feed" with
;; igor.wallet_pay (the receipt is signed by the node that owns the agent) and then GETs the
;; price from the local feed (the URL at offset 256, as in pricewatcher). After 5 payments it
;; only watches. Uses x402, http and log.
;; State (48 bytes, little-endian i64): ticks, payments made, last receipt bytes, last price,
;; last wallet_pay result, last http result.
(module
  (import "igor" "wallet_pay"
    (func $pay (param i64 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "igor" "http_request"
    (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "igor" "log_emit" (func $log_emit (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 16384))
  ;; 0..48 state; 256 URL; 1024 method; 1100 recipient; 1200 memo; 2048 response (cap 1024);
  ;; 4096 receipt (cap 1024); 3200 log lines
  (data (i32.const 256) "http://127.0.0.1:8787/price\00")
  (data (i32.const 1024) "GET")
  (data (i32.const 1100) "price-feed")
  (data (i32.const 1200) "one price quote")
  (data (i32.const 3200) "buyer: paid, receipt signed by the owner node")

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $scan
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $scan)))
    (local.get $n))

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

  (func (export "agent_init"))

  (func (export "agent_tick") (result i32)
    (local $r i32)
    (if (i64.lt_u (i64.load (i32.const 8)) (i64.const 5))
      (then
        (local.set $r
          (call $pay (i64.const 1000) (i32.const 1100) (i32.const 10)
            (i32.const 1200) (i32.const 15) (i32.const 4096) (i32.const 1024)))
        (i64.store (i32.const 32) (i64.extend_i32_s (local.get $r)))
        (if (i32.gt_s (local.get $r) (i32.const 0))
          (then
            (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1)))
            (i64.store (i32.const 16) (i64.extend_i32_u (i32.load (i32.const 4096))))
            (call $log_emit (i32.const 3200) (i32.const 45))))))
    (local.set $r
      (call $http
        (i32.const 1024) (i32.const 3)
        (i32.const 256) (call $strlen (i32.const 256))
        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
        (i32.const 2048) (i32.const 1024)))
    (i64.store (i32.const 40) (i64.extend_i32_s (local.get $r)))
    (if (i32.eq (local.get $r) (i32.const 200))
      (then (i64.store (i32.const 24) (call $parse (i32.const 2052) (i32.load (i32.const 2048))))))
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (i32.const 0))

  (func (export "agent_checkpoint") (result i32) (i32.const 48))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))

  (func (export "agent_resume") (param $ptr i32) (param $len i32)
    (if (i32.ge_u (local.get $len) (i32.const 48))
      (then (memory.copy (i32.const 0) (local.get $ptr) (i32.const 48)))))

  (func (export "malloc") (param $n i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $ptr) (local.get $n)) (i32.const 65536))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $n)))
    (local.get $ptr))
)
