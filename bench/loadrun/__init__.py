"""`smps bench`, the load run: a development tool that lives in the source
checkout, not in the installed package. smps/cli.py finds it beside the smps
package and registers its command."""
