// Uses Floe's installed API the way a trainer would and prints lines that
// run_consumer_test.sh checks.
#include <iostream>

#include <floe/floe.hpp>
#include <mpi.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 0;
  try {
    // A trainer's config, as it would come from a JSON file.
    const floe::CheckpointConfig config = floe::parse_config(
        nlohmann::json::parse(R"({"type": "hdf5", "output_dir": "/tmp/ckpt",
                                  "keep_last_n": 2})"));
    std::cout << "version " << floe::version() << "\n"
              << "config " << config.type << " " << config.output_dir.string()
              << " keep_last_n=" << config.keep_last_n << "\n"
              << "bf16_size " << floe::dtype_size(floe::DType::kBF16) << "\n"
              << "engines";
    for (const floe::EngineInfo& info : floe::list_engines()) {
      std::cout << " " << info.name;
    }
    std::cout << "\n";
    try {
      floe::parse_config({{"type", "hdf5"}, {"output_dir", "x"}, {"bogus", 1}});
      std::cout << "bad_key accepted\n";
    } catch (const floe::Error& e) {
      std::cout << "bad_key " << floe::error_code_name(e.code()) << "\n";
    }
  } catch (const floe::Error& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    status = 1;
  }
  MPI_Finalize();
  return status;
}
