"""Measurements written against the public controller API.

Sans-IO building blocks: `packets`, `probes`, `replies`, `records`; native baselines:
`native`; measurements through an endpoint: `traceroute.traceroute`, `ping.ping`
(import them from their modules, which pull in Twisted and the controller).
"""
