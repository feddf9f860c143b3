"""The service layer: where every front end's request meets the node.

``api`` holds the typed contract front ends use; ``kvservice.KVService`` implements it (and
the node's ``Application`` side); ``wait`` and ``watch`` are its registries of pending
proposals/reads and of watchers.
"""
