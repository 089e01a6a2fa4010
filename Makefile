# palm: `make run` starts the daemon with the example fleet, `make test` runs every test.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
DATA_DIR ?= .palm
PALM := ./$(BUILD_DIR)/src/palm/palm
JOBS ?= 2

.DEFAULT_GOAL := build
.PHONY: build deps configure test run stop bench format clean

deps:
	@./scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@ninja -C $(BUILD_DIR)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

run: build
	@if $(PALM) --data-dir $(DATA_DIR) daemon status >/dev/null 2>&1; then \
	  echo "palm daemon already running (stop it with: make stop)"; \
	else \
	  $(PALM) daemon start --data-dir $(DATA_DIR) --examples examples; \
	fi
	@./examples/feed_tasks.sh $(DATA_DIR) || echo "  (could not feed the example tasks; see above)"
	@echo
	@echo "  endpoint:   $${PALM_ENDPOINT:-http://127.0.0.1:7070}"
	@echo "  fleet:      $(PALM) status"
	@echo "  log:        $(DATA_DIR)/palmd.log"
	@echo "  token:      $(DATA_DIR)/admin.token"
	@echo "  stop:       make stop   (agents too; plain \`palm daemon stop\` leaves them running)"
	@echo
	@echo "  export PATH=$$PWD/$(BUILD_DIR)/src/palm:\$$PATH   # then: palm status"

stop:
	@$(PALM) --data-dir $(DATA_DIR) daemon stop --all

bench: build
	@if [ -x bench/run.sh ]; then bench/run.sh; \
	else echo "no bench/run.sh yet"; fi

format:
	@command -v clang-format >/dev/null || { echo "clang-format is not installed" >&2; exit 1; }
	@git ls-files -co --exclude-standard -- '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
