// --device parsing shared by the subcommands (train/cli_device.h).
#include "train/cli_device.h"

#include <stdexcept>

#include "engine/backend.h"

namespace xgan::cli {

Device parse_device(const std::string& s) {
  if (s == "cpu") return kCPU;
  if (s == "auto") return cuda::compiled() && cuda::device_count() > 0 ? Device{DeviceType::cuda, 0} : kCPU;
  int index = -1;
  if (s == "cuda")
    index = 0;
  else if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() < 9 &&
           s.find_first_not_of("0123456789", 5) == std::string::npos)
    index = std::stoi(s.substr(5));
  if (index < 0) throw std::invalid_argument("--device: expected cpu, cuda, cuda:0 or auto, got '" + s + "'");
  if (!cuda::compiled()) throw std::invalid_argument("--device " + s + ": this xgan was built without CUDA");
  if (cuda::device_count() == 0) throw std::invalid_argument("--device " + s + ": no GPU is visible");
  if (index > 0)
    throw std::invalid_argument(
        "--device " + s +
        ": xgan runs on one GPU, cuda:0; choose which with CUDA_VISIBLE_DEVICES=" + std::to_string(index));
  return Device{DeviceType::cuda, 0};
}

}  // namespace xgan::cli
