;; spin (hostile): agent_tick loops forever. Stopped by fuel or the watchdog.
(module
  (memory (export "memory") 1)

  (func (export "agent_init"))
  (func (export "agent_checkpoint") (result i32) (i32.const 0))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32))
  (func (export "agent_tick") (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
)
