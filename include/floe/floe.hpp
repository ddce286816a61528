// Floe's whole public API in one include.
#pragma once

#include "floe/checkpoint.hpp"
#include "floe/config.hpp"
#include "floe/dtype.hpp"
#include "floe/engine.hpp"
#include "floe/file_system.hpp"
#include "floe/error.hpp"
#include "floe/layout.hpp"
#include "floe/log.hpp"
#include "floe/manifest.hpp"
#include "floe/region.hpp"
#include "floe/registry.hpp"
#include "floe/state.hpp"
#include "floe/trainer.hpp"
#include "floe/version.hpp"
