"""The config schema, one module per section (dataclasses in Hydra's ConfigStore; YAML files
under conf/ only set values). `schema.Config` is the tree train.py, sft.py, train_rm.py and
evaluate.py compose; every recipe reads it, components never do."""
