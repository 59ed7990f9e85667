"""Isolated execution of model-written code.

Deliberately empty in this release: the bubblewrap-based sandbox and the code verifier that
uses it are the next milestone (see README "Status"). It will import nothing from
`hybrid_rl` or `verifiers`, so any evaluator can use it on its own.
"""
