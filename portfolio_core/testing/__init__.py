"""A testing kit for services built on portfolio_core (the ``testing`` extra).

``pip install 'portfolio-core[testing]'`` brings pytest, hypothesis,
pytest-asyncio, pytest-xdist and the embedded PostgreSQL. Three parts:

- this package is a **pytest plugin**, loaded automatically through the
  ``pytest11`` entry point named ``portfolio_core.testing`` (disable it with
  ``-p no:portfolio_core.testing``; without the installed entry point, load it
  with ``-p portfolio_core.testing``). Its fixtures give each test a fresh
  migrated database: see :mod:`portfolio_core.testing.plugin`;
- :mod:`portfolio_core.testing.strategies`: hypothesis strategies for valid
  and invalid amounts, symbols, names, keys, position requests and domain
  operations as data;
- :mod:`portfolio_core.testing.machine`: ``PortfolioStoreMachine``, a
  hypothesis ``RuleBasedStateMachine`` that drives a store with random
  operations and checks the library's invariants after every step; subclass
  it to add a service's own rules and invariants.

Importing ``portfolio_core`` never imports this package; importing this
package imports pytest but not hypothesis (the plugin is loaded in every
pytest run of an environment where portfolio-core is installed).
"""

# Registering this package registers the plugin module (pytest reads
# ``pytest_plugins`` of every plugin it loads); the strategies and the state
# machine are left to be imported by the tests that use them.
pytest_plugins = ["portfolio_core.testing.plugin"]
