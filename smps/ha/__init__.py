"""High availability: the role this node plays. `smps.ha.controller` decides it
(ACTIVE, STANDBY, FAULT) from keepalived's state changes (`smps.ha.keepalived`)
and the database lease that fences a second active node (`smps.ha.lease`)."""
