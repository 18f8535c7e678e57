"""The rule language shared by rule files and segment files: the file format
(`schema.py`), reading files with file and line errors (`loader.py`, `yamlcheck.py`),
the facts a condition can test (`facts.py`), email templates (`templates.py`), and the
durable-rules compiler and matcher (`engine.py`, the only module that imports it).
It knows no table and no stage: rules, segments and decisions build on it."""
