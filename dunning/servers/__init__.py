"""Local stand-ins of the outside world (orders API, partner API) for demos and tests.

Real HTTP on loopback, implementing the contracts in ../shared/contracts/.
"""
