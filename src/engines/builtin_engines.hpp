// The engines that ship with Floe, registered on the registry's first use.
#pragma once

#include <vector>

#include "floe/registry.hpp"

namespace floe {

// One EngineInfo per built-in engine; an engine left out of the build comes
// with no factory and an unavailable_reason saying how to build it.
std::vector<EngineInfo> builtin_engines();

}  // namespace floe
