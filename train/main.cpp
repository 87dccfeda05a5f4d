// The xgan command-line tool. For now: --help and --version; the subcommands of DESIGN.md
// (train, sample, step, explain, eval, fid, bench) arrive with the issues that build them.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "engine/backend.h"

namespace {

std::string version_text() {
  std::string s = std::string("xgan ") + XGAN_VERSION + "\n";
  if (!xgan::cuda::compiled()) {
    s += "CUDA: not compiled in (CPU backend only)\n";
  } else {
    int n = xgan::cuda::device_count();
    s += "CUDA: compiled in; " + (n > 0 ? std::to_string(n) + " GPU(s), first: " + xgan::cuda::device_name()
                                        : std::string("no GPU visible")) + "\n";
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "xgan: train GANs whose generator is guided by explanations (XAI maps) of the discriminator,\n"
      "after Rozendo et al., \"X-GAN\", ICEIS 2024. A from-scratch C++20/CUDA autodiff engine."};
  app.set_version_flag("--version", [] { return version_text(); }, "Print the version and the CUDA status, then exit");
  app.require_subcommand(0, 1);
  app.footer("Subcommands (train, sample, step, explain, eval, fid, bench) are being built; see README.md.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (argc == 1) {
    std::fputs(app.help().c_str(), stdout);
  }
  return 0;
}
