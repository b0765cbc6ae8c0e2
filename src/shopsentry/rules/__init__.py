"""Analyst control: rules (CEL conditions with an action) and block/allow lists, on top of
the model.

- :mod:`.model`: Rule, ListEntry and the versioned RuleSet;
- :mod:`.language`: CEL parsed with cel-python's grammar, type-checked against the names a
  rule may use, compiled to NumPy operations over a whole micro-batch;
- :mod:`.lists`: the live list entries as sets, CSV import;
- :mod:`.engine`: a rule set compiled once and applied in the documented precedence;
- :mod:`.defaults`: the hand-written starting rules, in shadow mode.

`docs/rules.md` is the user's guide.
"""
