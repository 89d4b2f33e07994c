# The two commands of the README. Each one sets up what it needs on a fresh clone (offline is
# fine: every package comes from the package registry, torch's CPU wheel first), with uv.
VENV   ?= .venv
PY     := $(VENV)/bin/python
HASH   := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
STAMP  := $(VENV)/.installed-all-$(HASH)
QUICK_STAMP := $(VENV)/.installed-quick-$(HASH)
# uv where it can be had (fetched with pip, given pip's configuration), else pip:
# RANKBENCH_INSTALLER=pip make ... uses pip throughout (scripts/install.py). The venv is made without
# pip (0.1 s against 3 s): the base interpreter's pip fetches uv, uv puts pip in the venv
INSTALL := $(PY) scripts/install.py

.PHONY: quick test fast install

install: $(STAMP)

# everything: every extra and the test tools (make test, make fast; CI)
$(STAMP): pyproject.toml constraints.txt scripts/install.py
	test -x $(PY) || python3 -m venv --without-pip $(VENV)
	# torch first, pinned to its CPU build, so nothing pulls CUDA wheels
	$(INSTALL) torch==2.13.0
	$(INSTALL) -c constraints.txt -e '.[all,test]'
	rm -f $(VENV)/.installed-* && touch $@ $(QUICK_STAMP)

# what the quick suite needs (rankbench[quick]: BM25, the bi-encoder, ONNX, plots), no more: a
# newcomer's first command does not wait for Ray, the servers or the framework adapters
$(QUICK_STAMP): pyproject.toml constraints.txt scripts/install.py
	test -x $(PY) || python3 -m venv --without-pip $(VENV)
	$(INSTALL) torch==2.13.0
	$(INSTALL) -c constraints.txt -e '.[quick]'
	touch $@

quick: $(QUICK_STAMP)
	$(VENV)/bin/rankbench run quick

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# the developers' loop: no model, no JVM, no training, no benchmark, no golden report, no load test, no Ray (tests/conftest.py
# makes importing torch, onnxruntime, transformers or jnius there an error that names the marker to add)
fast: $(STAMP)
	RANKBENCH_TEST_TIER=fast $(VENV)/bin/python -m pytest -q -n 2 -m "not (models or jvm or training or bench or golden or load or ray)"
