;; sum: hydra_map returns the sum of its item indices, the smallest module of docs/wasm.md.
(module
  (func (export "hydra_map") (param $lo i64) (param $hi i64) (result i64)
    (local $s i64)
    (block $done
      (loop $next
        (br_if $done (i64.ge_u (local.get $lo) (local.get $hi)))
        (local.set $s (i64.add (local.get $s) (local.get $lo)))
        (local.set $lo (i64.add (local.get $lo) (i64.const 1)))
        (br $next)))
    (local.get $s)))
