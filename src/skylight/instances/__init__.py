"""Instances: the lifecycle rules, the sagas' shared steps, and the operations users call."""
