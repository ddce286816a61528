#include "engines/builtin_engines.hpp"

namespace floe {

// Each engine folder defines its <name>_engine_info() when it is built.
#ifdef FLOE_ENGINE_HDF5
EngineInfo hdf5_engine_info();
#endif
#ifdef FLOE_ENGINE_MPIIO
EngineInfo mpiio_engine_info();
#endif
#ifdef FLOE_ENGINE_HF
EngineInfo hf_engine_info();
#endif

namespace {

[[maybe_unused]] EngineInfo left_out(const char* name, const char* description, bool resumable,
                    const char* option) {
  EngineInfo info;
  info.name = name;
  info.description = description;
  info.resumable = resumable;
  info.unavailable_reason = std::string("reconfigure Floe with -D") + option +
                            "=ON and rebuild";
  return info;
}

}  // namespace

std::vector<EngineInfo> builtin_engines() {
  std::vector<EngineInfo> out;
#ifdef FLOE_ENGINE_HDF5
  out.push_back(hdf5_engine_info());
#else
  out.push_back(left_out("hdf5", "one parallel-HDF5 file per checkpoint", true,
                         "FLOE_ENGINE_HDF5"));
#endif
#ifdef FLOE_ENGINE_MPIIO
  out.push_back(mpiio_engine_info());
#else
  out.push_back(left_out("mpiio", "raw MPI-IO into one aligned data file", true,
                         "FLOE_ENGINE_MPIIO"));
#endif
#ifdef FLOE_ENGINE_HF
  out.push_back(hf_engine_info());
#else
  out.push_back(left_out("hf", "export to Hugging Face safetensors", false,
                         "FLOE_ENGINE_HF"));
#endif
  return out;
}

}  // namespace floe
