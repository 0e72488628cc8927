;; membomb (hostile): agent_tick grows memory 16 pages at a time until memory.grow
;; returns -1 (the cap), then stores one byte past the end of memory, which traps.
(module
  (memory (export "memory") 1)
  (global $grows (export "grows") (mut i32) (i32.const 0))

  (func (export "agent_init"))
  (func (export "agent_checkpoint") (result i32) (i32.const 0))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32))
  (func (export "agent_tick") (result i32)
    (block $refused
      (loop $more
        (br_if $refused (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
        (global.set $grows (i32.add (global.get $grows) (i32.const 1)))
        (br $more)))
    (i32.store8 (i32.add (i32.mul (memory.size) (i32.const 65536)) (i32.const 8)) (i32.const 1))
    (i32.const 0))
)
