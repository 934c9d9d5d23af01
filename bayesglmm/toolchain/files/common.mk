# common.mk -- shared build rules of the bayesglmm Stan toolchain.
#
# Included by cmdstan/makefile and bridgestan/Makefile.  Both directories sit next
# to this file inside the installed toolchain root:
#
#   <root>/common.mk          this file
#   <root>/stan/              include/, lib/, stanc   (unpacked from the httpstan wheel)
#   <root>/src/               our own C++ sources (driver, BridgeStan C interface, tools)
#   <root>/build/             model-independent objects and precompiled headers
#   <root>/cmdstan/           CmdStan-compatible home (makefile, bin/)
#   <root>/bridgestan/        BridgeStan-compatible home (Makefile)
#
# One model translation unit is compiled once (-fPIC, against a precompiled header)
# into <p>.o next to <p>.stan; the CmdStan makefile links it with the driver into the
# executable <p>, the BridgeStan makefile links the same object into <p>_model.so.

TC_ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
STAN_ROOT ?= $(TC_ROOT)/stan
STAN_INC := $(STAN_ROOT)/include
STAN_LIB := $(STAN_ROOT)/lib
STANC := $(STAN_ROOT)/stanc
BUILD := $(TC_ROOT)/build
SRC := $(TC_ROOT)/src

CXX ?= g++
# Optimisation level of model translation units.  -O1 is the measured best trade-off
# (see docs/toolchain.md): about 17% faster to compile than -O3 with the precompiled
# header, for about 17% slower gradients; -O2 buys nothing over -O3.  Override with O=3.
O ?= 1
# Model-independent parts (driver, BridgeStan interface, tools) are built once at -O3.
O_LIB := 3

# Threads are always on: one process runs all chains and reduce_sum works.
STAN_DEFINES := -DSTAN_THREADS -D_REENTRANT -DBOOST_DISABLE_ASSERTS \
                -D_GLIBCXX_USE_CXX11_ABI=0
CXXFLAGS_BASE := -std=c++17 -pthread -fPIC $(STAN_DEFINES) \
                 -Wno-sign-compare -Wno-ignored-attributes -Wno-deprecated-declarations \
                 -Wno-class-memaccess -I$(STAN_INC)
LDLIBS_STAN := -L$(STAN_LIB) -Wl,-rpath,$(STAN_LIB) \
               -lsundials_kinsol -lsundials_cvodes -lsundials_idas -lsundials_nvecserial -ltbb

# Precompiled header for the model headers, one per optimisation level (a .gch only
# serves compiles with the same -O level and PIC setting).
PCH_DIR = $(BUILD)/pch_O$(O)
PCH_HDR = $(PCH_DIR)/pch.hpp
PCH_GCH = $(PCH_HDR).gch

$(BUILD)/pch_O%/pch.hpp.gch:
	@mkdir -p $(dir $@)
	@printf '#include <stan/model/model_header.hpp>\n' > $(dir $@)pch.hpp
	$(CXX) $(CXXFLAGS_BASE) -O$* -x c++-header $(dir $@)pch.hpp -o $@.tmp
	@mv $@.tmp $@

# A user header is force-included when given, or when stanc runs with
# --allow-undefined and <dir>/user_header.hpp exists (CmdStan's convention).
ifneq (,$(findstring allow-undefined,$(STANCFLAGS)))
USER_HEADER ?= $(wildcard $(dir $(firstword $(MODEL_GOALS)))user_header.hpp)
endif
USER_HEADER_FLAG = $(if $(USER_HEADER),-include $(USER_HEADER))

.SUFFIXES:
MAKEFLAGS += --no-builtin-rules
# Keep generated headers and model objects (they are "intermediate" for a goal <p>),
# without .SECONDARY's all-targets form, which would also stop make from regenerating
# a deleted <p>.hpp that a makefile names explicitly (cmdstanpy deletes it to force a
# rebuild).
.PRECIOUS: %.hpp %.o
.DELETE_ON_ERROR:

# Stan program -> C++ header (kept next to the .stan file, as CmdStan does).
%.hpp : %.stan
	$(STANC) $(STANCFLAGS) --o=$@ $<

# C++ header -> position-independent model object, shared by the exe and the .so.
%.o : %.hpp $(PCH_GCH)
	$(CXX) $(CXXFLAGS_BASE) -O$(O) $(CXXFLAGS) -Winvalid-pch -include $(PCH_HDR) \
	    $(USER_HEADER_FLAG) -x c++ -c $< -o $@
