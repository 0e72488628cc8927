;; badimport (hostile): imports igor.clock_now but its manifest declares only "log".
(module
  (import "igor" "clock_now" (func $clock_now (result i64)))
  (memory (export "memory") 1)

  (func (export "agent_init"))
  (func (export "agent_checkpoint") (result i32) (i32.const 0))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32))
  (func (export "agent_tick") (result i32)
    (drop (call $clock_now))
    (i32.const 0))
)
