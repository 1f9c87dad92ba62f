# Two commands do all the set-up: `make train` and `make test` (each creates .venv on first use).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUNDLE := bundles/chest_xray_lung_segmentation
export MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK ?= true

.PHONY: venv train test evaluate infer clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

venv: $(VENV)/.installed

## Train the lung bundle on the embedded default data (CRD via kagglehub when online, else the committed JSRT sample).
train: venv
	cd $(BUNDLE) && ../../$(PY) -m monai.bundle run training --config_file "['configs/common.yaml','configs/train.yaml']" $(ARGS)

## Run the test suite.
test: venv
	$(PY) -m pytest $(ARGS)

evaluate: venv
	cd $(BUNDLE) && ../../$(PY) -m monai.bundle run evaluating --config_file "['configs/common.yaml','configs/evaluate.yaml']" $(ARGS)

clean:
	rm -rf $(VENV) $(BUNDLE)/models $(BUNDLE)/eval
