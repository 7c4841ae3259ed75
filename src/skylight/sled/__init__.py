"""The seam between the control plane and the machines: sled agents.

The control plane talks to sleds only through :class:`skylight.sled.agent.SledAgent`. The
simulated rack (``sim.py``) implements it in-process; an HTTP client or a real hypervisor
driver can implement it too.
"""
