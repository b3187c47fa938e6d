"""Examples of services built on portfolio_core (see README.md, "An example service")."""
