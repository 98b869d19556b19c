# The book's two commands: `make run` executes every notebook into build/, `make test` tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
# Under the tests a verdict that does not hold fails its notebook; `make run` prints it instead
STRICT := FTUTILS_STRICT_VERDICTS=1
# How many notebooks `make run` executes at once, and pytest-xdist workers for the unit tests
# and nbval (each notebook stays in one worker: --dist loadfile)
JOBS ?= 2
# pytest-xdist workers of `make test`: one more than the cores, because a notebook's kernel
# spends much of its time in single-threaded Python (tracing, pandas, plots) and leaves a core
# idle; results do not depend on it (each TensorFlow process sizes its threads by the cores).
TEST_JOBS ?= 3

.PHONY: run test test-distributed test-folder book test-book test-min lint unit nbval bench gpu-check cache-archive cache-restore clean clean-cache

# A venv left half-made (no venv module, an unsupported Python) is removed, so the next run
# starts clean instead of failing on it forever.
$(VENV)/.installed: requirements.txt pyproject.toml
	@if ! $(PY) -m pip --version >/dev/null 2>&1; then \
		rm -rf $(VENV); \
		$(PYTHON) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' || { \
			echo "$(PYTHON) is not Python 3.10-3.13 (TensorFlow 2.21's range): name one that" \
				"is, e.g. make $(or $(MAKECMDGOALS),run) PYTHON=python3.12"; exit 1; }; \
		$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "Could not create $(VENV):" \
			"install your Python's venv module (Debian/Ubuntu: sudo apt install python3-venv)" \
			"and run make again."; exit 1; }; \
	fi
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -e .
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/run_book.py --jobs $(JOBS) $(NOTEBOOKS)

# Unit tests and notebooks in one pytest-xdist run, longest notebooks first, so neither core
# waits for the other (tests/nbval_order.py); `make unit` and `make nbval` run one part.
# Tests that start their own replicas or workers in fresh interpreters (marked own_strategy)
# run the same under any setting, so only `make test-distributed` runs them.
NBVAL_ARGS := --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	-p tests.nbval_stderr -p tests.nbval_order
# The notebooks' kernels record the Keras-cache files they read (ftutils.downloads), and the
# README's offline list must name exactly those (scripts/check_offline_list.py).
KERAS_FILES_LOG := build/keras-files
RECORD_KERAS_FILES := FTUTILS_KERAS_FILES_LOG=$(abspath $(KERAS_FILES_LOG))
test: lint $(VENV)/.installed
	rm -rf $(KERAS_FILES_LOG)
	$(STRICT) $(RECORD_KERAS_FILES) $(PY) -m pytest -n $(TEST_JOBS) --dist loadfile --nbval \
		-m "not own_strategy" $(NBVAL_ARGS) tests notebooks
	$(PY) scripts/check_offline_list.py $(KERAS_FILES_LOG)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check ftutils tests scripts bench notebooks book
	$(VENV)/bin/ruff format --check ftutils tests scripts bench notebooks book

unit: $(VENV)/.installed
	$(PY) -m pytest -n $(JOBS) --dist loadfile tests

nbval: $(VENV)/.installed
	rm -rf $(KERAS_FILES_LOG)
	$(STRICT) $(RECORD_KERAS_FILES) $(PY) -m pytest --nbval $(NBVAL_ARGS) -n $(JOBS) --dist loadfile \
		notebooks
	$(PY) scripts/check_offline_list.py $(KERAS_FILES_LOG)

# The GPU-shaped configuration on a CPU: two replicas (logical CPU devices) and bfloat16
# mixed precision, for the unit tests and two notebooks whose verdicts must still hold, each
# part spread over the workers as `make test` does. The unit tests include several machines
# as two MultiWorkerMirroredStrategy processes on 127.0.0.1 (tests/test_multiworker.py, in
# float32: a fit with validation data, and a resume after one worker is killed). The notebooks run only on a CPU with
# AVX-512: without it bfloat16 is emulated, and on an AVX2-only AMD EPYC each took 25 minutes
# (docs/traps.md).
DISTRIBUTED := FTUTILS_STRATEGY=mirrored:2 FTUTILS_PRECISION=mixed_bfloat16
DISTRIBUTED_NOTEBOOKS := notebooks/01_introduction.ipynb notebooks/04_4_finetuning_workflow.ipynb
test-distributed: $(VENV)/.installed
	$(DISTRIBUTED) $(PY) -m pytest -n $(TEST_JOBS) --dist loadfile tests
	@if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
		$(STRICT) $(DISTRIBUTED) $(PY) scripts/run_book.py --jobs $(JOBS) \
			--out build/distributed $(DISTRIBUTED_NOTEBOOKS); \
	else \
		echo "Skipped $(DISTRIBUTED_NOTEBOOKS) under mixed_bfloat16: this CPU has no AVX-512," \
			"so bfloat16 is emulated (docs/traps.md)."; \
	fi

# Every notebook that takes DATASET, on generated folders with Chinese class names: the path a
# reader's own photos take. The large folder is streamed from disk (FTUTILS_STREAM_THRESHOLD is
# below its size), the small one (with a greyscale, an RGBA and a corrupt file) is loaded into
# memory; both run with the same small parameters (FOLDER_PARAMS: PREFIX:NAME sets NAME in the
# notebooks whose file name starts with PREFIX) and one cache emptied first, so a sweep whose
# key missed the data would show the large folder's rows as "(cached)" in the small folder's
# run. Then each notebook at its defaults on the small folder, which must stop with an error
# naming the parameters to lower. scripts/check_folder_runs.py checks both. Verdicts print,
# they do not fail it.
OWN_IMAGES := build/own_images
FOLDER_RUNS := build/folder
FOLDER_NOTEBOOKS := $(addprefix notebooks/,01_introduction.ipynb 02_1_datasets.ipynb \
	03_1_loss_functions.ipynb 03_2_gradient_descent.ipynb 03_3_momentum.ipynb 03_4_dropout.ipynb \
	04_4_finetuning_workflow.ipynb 04_5_small_sample_learning.ipynb)
FOLDER_PARAMS := -p IMAGE_SIZE 32 \
	-p 01_:IMAGES_PER_CLASS 20 -p 01_:TEST_PER_CLASS 8 -p 01_:HEAD_EPOCHS 5 \
	-p 01_:FINETUNE_EPOCHS 3 -p 01_:ENSEMBLE_BACKBONES '("mobilenet_v2",)' -p 01_:ENSEMBLE_HEADS 1 \
	-p 01_:STUDY_SEEDS '[0, 1, 2]' \
	-p 02_1_:SAMPLE_SIZE 30 -p 02_1_:SAMPLE_DRAWS 200 -p 02_1_:LEAK_TRAIN_PER_CLASS 20 \
	-p 02_1_:LEAK_VAL_PER_CLASS 3 -p 02_1_:IMBALANCE_POOL_PER_CLASS 20 \
	-p 02_1_:IMBALANCE_TOTAL_PER_CLASS 8 -p 02_1_:IMBALANCE_TEST_PER_CLASS 8 \
	-p 03_1_:IMAGES_PER_CLASS 20 -p 03_1_:VAL_PER_CLASS 5 -p 03_1_:TEST_PER_CLASS 8 \
	-p 03_1_:EPOCHS 10 -p 03_1_:BATCH_SIZE 16 -p 03_1_:STUDY_SEEDS '[0, 1, 2]' \
	-p 03_2_:IMAGES_PER_CLASS 20 -p 03_2_:VAL_PER_CLASS 5 -p 03_2_:MAX_STEPS 300 \
	-p 03_2_:BATCH_EPOCHS 2 -p 03_2_:SEEDS '[0, 1, 2]' -p 03_2_:TEST_PER_CLASS 8 \
	-p 03_2_:LAYER_EPOCHS 2 \
	-p 03_3_:IMAGES_PER_CLASS 20 -p 03_3_:VAL_PER_CLASS 5 -p 03_3_:STUDY_SEEDS '[0, 1, 2]' \
	-p 03_4_:IMAGES_PER_CLASS 20 -p 03_4_:VAL_PER_CLASS 2 -p 03_4_:TEST_PER_CLASS 8 \
	-p 03_4_:SEEDS '[0,1]' -p 03_4_:HIDDEN 64 -p 03_4_:STEPS 60 -p 03_4_:LONG_STEPS 120 \
	-p 03_4_:CHECK_EVERY 30 -p 03_4_:PROBE_EPOCHS 3 \
	-p 04_4_:TRAIN_PER_CLASS 10 -p 04_4_:VAL_PER_CLASS 3 -p 04_4_:TEST_PER_CLASS 8 \
	-p 04_4_:HEAD_EPOCHS 3 -p 04_4_:FINETUNE_EPOCHS 3 \
	-p 04_5_:SHOTS '[1,5,10]' -p 04_5_:VAL_PER_CLASS 2 -p 04_5_:STUDY_SEEDS '[0,1,2]' \
	-p 04_5_:SMALL_VAL_MAX 1 -p 04_5_:ES_SHOTS '[1,5]' -p 04_5_:ES_STEPS 40 \
	-p 04_5_:TEST_PER_CLASS 8 -p 04_5_:N_UNLABELLED 40 -p 04_5_:HEAD_STEPS 30 \
	-p 04_5_:FINETUNE_STEPS 10 -p 04_5_:PSEUDO_SHOTS '[1,10]' -p 04_5_:PSEUDO_ROUNDS 2 \
	-p 04_5_:PSEUDO_PER_CLASS 5 -p 04_5_:CONVERGE_SHOTS '[1,5,10]' -p 04_5_:CONVERGE_PATIENCE 20 \
	-p 04_5_:CONVERGE_MAX_STEPS 100 -p 04_5_:SHIFT_SHOTS '[1,5,10]'
RUN_ON_FOLDER = FTUTILS_CACHE=$(abspath $(FOLDER_RUNS))/cache $(PY) scripts/run_book.py \
	--jobs $(JOBS) --out $(FOLDER_RUNS)/$(1) -p DATASET $(abspath $(OWN_IMAGES))/$(2)
test-folder: $(VENV)/.installed
	rm -rf $(OWN_IMAGES) $(FOLDER_RUNS)
	$(PY) scripts/make_image_folder.py $(OWN_IMAGES)/large --per-class 80
	$(PY) scripts/make_image_folder.py $(OWN_IMAGES)/small --per-class 40 --awkward
	FTUTILS_STREAM_THRESHOLD=200 $(call RUN_ON_FOLDER,large,large) $(FOLDER_PARAMS) \
		$(FOLDER_NOTEBOOKS)
	$(call RUN_ON_FOLDER,small,small) $(FOLDER_PARAMS) $(FOLDER_NOTEBOOKS)
	-$(call RUN_ON_FOLDER,defaults,small) $(FOLDER_NOTEBOOKS)
	$(PY) scripts/check_folder_runs.py --ran $(FOLDER_RUNS)/large $(FOLDER_RUNS)/small \
		--too-small $(FOLDER_RUNS)/defaults

# The rendered book: the committed notebooks as a static site with a table of contents,
# previous/next links, the errata page and the glossary (build/book/index.html). Its
# packages (requirements-book.txt) are installed only for it.
$(VENV)/.book-installed: $(VENV)/.installed requirements-book.txt
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || { echo "make book needs" \
		"Python 3.11 or newer (Sphinx 8.2, sphinx-book-theme 1.3+); the venv has" \
		"$$($(PY) -c 'import platform; print(platform.python_version())'): remove .venv and run" \
		"make book PYTHON=python3.12"; exit 1; }
	$(PY) -m pip install -r requirements-book.txt
	touch $@

book: $(VENV)/.book-installed
	$(PY) scripts/build_book.py

# The book built, every internal link checked and its index opened in headless Chromium
# (Debian: apt install chromium; without it that one test skips)
test-book: book
	$(PY) -m pytest tests/test_book.py

# The oldest runtime dependencies the requirements allow (requirements-min.txt: TensorFlow
# 2.20.0, Keras 3.14.0, ...) in a venv of their own, unit tests only: the notebooks' committed
# outputs come from the current versions. .ci/run does not call it.
MIN_VENV ?= .venv-min
test-min:
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -c requirements-min.txt -r requirements.txt -e .
	$(MIN_VENV)/bin/python -m pytest -n $(JOBS) --dist loadfile tests

bench: $(VENV)/.installed
	$(PY) bench/fast_path.py
	$(PY) bench/distribution.py
	$(PY) bench/memory.py
	$(PY) bench/onednn.py

gpu-check: $(VENV)/.installed
	$(PY) scripts/gpu_check.py

# Carry the Keras cache to a machine that cannot download it (see README, "Offline use")
ARCHIVE ?= keras-cache.tar.gz
cache-archive:
	$(PYTHON) scripts/keras_cache.py archive $(ARCHIVE)

cache-restore:
	$(PYTHON) scripts/keras_cache.py restore $(ARCHIVE)

clean:
	rm -rf build .pytest_cache

# ftutils' cache of activations, pretrained weights and sweep results (see the README)
clean-cache: $(VENV)/.installed
	$(PY) -c "import shutil; from ftutils.config import CACHE_DIR as c; \
		shutil.rmtree(c, ignore_errors=True); print('removed', c)"
