;; pass_all.wat - allows everything (the monitor of the benchmark, and a template).
;; Build: pktlab monitor build examples/monitors/pass_all.wat -o pass_all.wasm
(module
  (import "monitor" "memory" (memory 2))   ;; 2 pages, no maximum: the host memory
  (global $heap (mut i32) (i32.const 65536))
  ;; malloc/free: the host places 3 small buffers per session; a bump allocator will do
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7))
                               (i32.const -8)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.sub (i32.shr_u (i32.add (global.get $heap)
                                                                  (i32.const 65535))
                                                         (i32.const 16))
                                               (memory.size)))
                        (i32.const -1))
              (then (return (i32.const 0))))))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "check_pktlab_message_nopen")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32) (i32.const 0))
  (func (export "check_pktlab_message_nclose") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "check_pktlab_message_nsend")
    (param i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i32) (result i32) (i32.const 0))
  (func (export "check_pktlab_message_ndata")
    (param i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32) (i32.const 0))
  (func (export "check_pktlab_message_ncap")
    (param i32 i32 i32 i64 i32 i32) (result i32) (i32.const 0))
)
