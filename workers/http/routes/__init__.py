"""One module of routes per resource of DESIGN §7."""
