"""DeviceFleet benchmarks: every stage against a raw baseline run beside it (``make bench``).

Not part of the test run. Each benchmark (``p1_ingest`` ...) starts the project's own service
as a real process against the local stack, feeds it a fixed workload, and runs the same
workload through the simplest thing that does the stage's job without the project's code
(the baseline). The ratio of the two is the result; absolute figures are context only.
"""
