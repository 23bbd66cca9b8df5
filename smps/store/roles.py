"""The admin roles, in a module of their own so the command line can offer
them without importing the database layer."""

ROLES = ("admin", "operator", "viewer")
