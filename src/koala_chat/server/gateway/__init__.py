"""A gateway a team can share: named keys with limits, shared state, usage.

`koala serve --keys FILE [--state URL]`. The modules, one job each: `keys`
(the keys file: reading it, `koala keys add` appending to it), `backends`
(the seam of the state, and `open_state`), `sqlitestate` and `redisstate`
(the two backends), `usage` (the counters per key and day, and their
summary), `gate` (the middlewares, admission, reloading on SIGHUP).
"""
