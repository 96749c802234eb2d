;; The demo's functions: takes an event whose data is a JSON object, works
;; for a while (a count-down of @SPIN@: 0 for a quick version, millions for
;; a slow one), logs "@LOG@" and emits one event of type "@TYPE@" with the
;; same data. Data that is not a JSON object fails the invocation.
;; `glassbox demo` fills in the @…@ parts before deploying it.
(component
  (core module $libc
    (memory (export "mem") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      ;; a ring: what the host allocates lives only until the call returns
      (if (i32.gt_u (i32.add (global.get $bump) (local.get 3)) (i32.const 60000))
        (then (global.set $bump (i32.const 4096))))
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (local.get $p)))
  (core instance $libc (instantiate $libc))
  (import "glassbox:function/log@0.1.0" (instance $log
    (type $l (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level (eq $l)))
    (export "log" (func (param "level" $level) (param "message" string)))))
  (core func $log (canon lower (func $log "log") (memory (core memory $libc "mem"))))
  (core module $main
    (import "env" "mem" (memory 1))
    (import "env" "log" (func $log (param i32 i32 i32)))
    (data (i32.const 512) "@TYPE@")
    (data (i32.const 600) "@LOG@")
    (data (i32.const 700) "the event's data is not a JSON object")
    (func (export "handle") (param $event i32) (result i32)
      (local $n i32)
      ;; data: list<u8> at event + 56 (ptr), + 60 (len); must start with '{'
      (if (i32.or
            (i32.eqz (i32.load (i32.add (local.get $event) (i32.const 60))))
            (i32.ne (i32.load8_u (i32.load (i32.add (local.get $event) (i32.const 56)))) (i32.const 123)))
        (then
          (i32.store8 (i32.const 16) (i32.const 1))
          (i32.store (i32.const 20) (i32.const 700))
          (i32.store (i32.const 24) (i32.const 37))
          (return (i32.const 16))))
      (local.set $n (i32.const @SPIN@))
      (block $done
        (loop $spin
          (br_if $done (i32.eqz (local.get $n)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $spin)))
      (call $log (i32.const 2) (i32.const 600) (i32.const @LOGLEN@))
      ;; output record at 256: type, subject (none), datacontenttype (none), data
      (i32.store (i32.const 256) (i32.const 512))
      (i32.store (i32.const 260) (i32.const @TYPELEN@))
      (i32.store8 (i32.const 264) (i32.const 0))
      (i32.store8 (i32.const 276) (i32.const 0))
      (i32.store (i32.const 288) (i32.load (i32.add (local.get $event) (i32.const 56))))
      (i32.store (i32.const 292) (i32.load (i32.add (local.get $event) (i32.const 60))))
      ;; result at 16: ok, list of one at 256
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store (i32.const 20) (i32.const 256))
      (i32.store (i32.const 24) (i32.const 1))
      (i32.const 16)))
  (core instance $i (instantiate $main
    (with "env" (instance (export "mem" (memory $libc "mem")) (export "log" (func $log))))))
  (type $event (record
    (field "id" string) (field "source" string) (field "type" string) (field "subject" (option string))
    (field "time" string) (field "datacontenttype" (option string)) (field "data" (list u8))
    (field "correlationid" string) (field "causationid" (option string)) (field "hop" u32)
    (field "device" (option string))))
  (type $output (record
    (field "type" string) (field "subject" (option string)) (field "datacontenttype" (option string))
    (field "data" (list u8))))
  (export $event-e "event" (type $event))
  (export $output-e "output" (type $output))
  (type $handle-t (func (param "event" $event-e) (result (result (list $output-e) (error string)))))
  (func $handle (type $handle-t)
    (canon lift (core func $i "handle") (memory (core memory $libc "mem")) (realloc (core func $libc "realloc"))))
  (instance $handler (export "handle" (func $handle)))
  (export "glassbox:function/handler@0.1.0" (instance $handler)))
