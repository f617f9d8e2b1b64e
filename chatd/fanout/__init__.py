"""
Fan-out between the nodes of a chatd cluster: in process when there is one node,
over Redis pub/sub when there are several.
"""
