#!/bin/sh
# `deno task` helper: run a script with the Deno found on PATH. Inside `deno task`, a bare `deno`
# that resolves to node_modules/.bin/deno (the npm "deno" package, a native binary) would be
# started as a JavaScript bin script and fail; a plain shell exec runs it as the binary it is.
exec deno run --allow-all "$@"
