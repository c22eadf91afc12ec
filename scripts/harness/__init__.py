"""What tests and benchmarks share to drive the registrar from outside: `scscf serve` started
and stopped, free loopback ports, sipp, a throwaway redis-server, Kamailio as a P-CSCF and
sample SIP messages.

It imports nothing of tests/, so benchmarks run without the test tree and tests never import a
benchmark.
"""
