"""The admin UI's pages, one module per page family; :mod:`smps.web.ui` mounts them.

Each page module serves its URLs as ``ROUTES`` ((method, path, handler, action)
rows) and uses only what :mod:`.common` (state, guard, rendering, flash
messages) and :mod:`.forms` (field errors, form pages, row look-up and delete)
make public; :mod:`.chart` and :mod:`.ladder` turn data into the verdict chart
and the trace ladder.
"""
