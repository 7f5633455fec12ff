# Make habits on top of build.py. Make decides nothing here: every target is phony and
# build.py decides what is up to date (content hashes of every input, not file times).
#   make wsgi        build one appliance        make test     smoke-test every appliance
#   make all         build every appliance      make clean    remove unused store entries
#   make -j2 all     build two at a time        make check    run the test suite
BUILD := ./build.py
APPLIANCES := $(basename $(notdir $(wildcard appliances/*.toml)))
# make -jN passes its job count to build.py -j N (shared steps are still built once).
JOBS = $(or $(patsubst -j%,%,$(filter -j%,$(MAKEFLAGS))),1)

.PHONY: all test clean check list $(APPLIANCES)

all:
	$(BUILD) build --all -j $(JOBS)

$(APPLIANCES):
	$(BUILD) build $@

test:
	$(BUILD) test --all

clean:
	$(BUILD) clean

check:
	.venv/bin/python -m pytest

list:
	$(BUILD) list
