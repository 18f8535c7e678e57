"""The rule language shared by rule files and segment files: the language (`schema.py`)
and the two kinds of file (`files.py`), reading a file with file and line errors
(`parse.py`, `yamlcheck.py`), the checks the schema cannot express (`validate.py`),
loading a directory of files all together or not at all (`loader.py`), the facts a
condition can test (`facts.py`), email templates (`templates.py`), and the
durable-rules compiler and matcher (`engine.py`, the only module that imports it).
It knows no table and no stage: rules, segments and decisions build on it."""
