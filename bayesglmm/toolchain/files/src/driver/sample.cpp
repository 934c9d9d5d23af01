// method=sample: NUTS (unit/diag/dense, adaptive or not, multi-chain in one process),
// static HMC (single chain) and the fixed_param sampler.
#include "driver.hpp"

#include <stan/callbacks/json_writer.hpp>
#include <stan/io/array_var_context.hpp>
#include <stan/services/sample/fixed_param.hpp>
#include <stan/services/sample/hmc_nuts_dense_e.hpp>
#include <stan/services/sample/hmc_nuts_dense_e_adapt.hpp>
#include <stan/services/sample/hmc_nuts_diag_e.hpp>
#include <stan/services/sample/hmc_nuts_diag_e_adapt.hpp>
#include <stan/services/sample/hmc_nuts_unit_e.hpp>
#include <stan/services/sample/hmc_nuts_unit_e_adapt.hpp>
#include <stan/services/sample/hmc_static_dense_e.hpp>
#include <stan/services/sample/hmc_static_dense_e_adapt.hpp>
#include <stan/services/sample/hmc_static_diag_e.hpp>
#include <stan/services/sample/hmc_static_diag_e_adapt.hpp>
#include <stan/services/sample/hmc_static_unit_e.hpp>
#include <stan/services/sample/hmc_static_unit_e_adapt.hpp>

namespace bglmm {

using ctx_ptr = std::shared_ptr<stan::io::var_context>;
using metric_writer_t = stan::callbacks::json_writer<std::ofstream>;

namespace {

// Unit inverse metric (diag or dense) for models without a metric file.
ctx_ptr unit_metric(size_t n, bool dense) {
  std::vector<std::string> names{"inv_metric"};
  if (dense) {
    std::vector<double> vals(n * n, 0.0);
    for (size_t i = 0; i < n; ++i) vals[i * n + i] = 1.0;
    std::vector<std::vector<size_t>> dims{{n, n}};
    return std::make_shared<stan::io::array_var_context>(names, vals, dims);
  }
  std::vector<double> vals(n, 1.0);
  std::vector<std::vector<size_t>> dims{{n}};
  return std::make_shared<stan::io::array_var_context>(names, vals, dims);
}

}  // namespace

int run_sample(Run& r) {
  stan::model::model_base& model = *r.model;
  const std::string S = "method.sample.";
  int num_samples = r.geti(S + "num_samples");
  int num_warmup = r.geti(S + "num_warmup");
  bool save_warmup = r.getb(S + "save_warmup");
  int thin = r.geti(S + "thin");
  bool adapt = r.getb(S + "adapt.engaged");
  double gamma = r.getd(S + "adapt.gamma");
  double delta = r.getd(S + "adapt.delta");
  double kappa = r.getd(S + "adapt.kappa");
  double t0 = r.getd(S + "adapt.t0");
  unsigned int init_buffer = r.geti(S + "adapt.init_buffer");
  unsigned int term_buffer = r.geti(S + "adapt.term_buffer");
  unsigned int window = r.geti(S + "adapt.window");
  bool save_metric = r.getb(S + "adapt.save_metric");
  size_t n = r.geti(S + "num_chains");
  Arg& algorithm = r.arg(S + "algorithm");

  if (model.num_params_r() == 0 && algorithm.value != "fixed_param") {
    r.logger.info(
        "Model contains no parameters, running fixed_param sampler, no updates to "
        "Markov chain");
    algorithm.value = "fixed_param";
  }
  bool fixed = algorithm.value == "fixed_param";
  const std::string H = S + "algorithm.hmc.";
  std::string engine = fixed ? "" : r.gets(H + "engine");
  if (!fixed && adapt && num_warmup == 0)
    throw std::invalid_argument(
        "The number of warmup samples (num_warmup) must be greater than zero if "
        "adaptation is enabled.");
  if (!fixed && engine == "static" && n > 1)
    throw std::invalid_argument(
        "Argument num_chains > 1 is not supported for the static HMC engine.");

  // Output files, one per chain.
  std::vector<std::string> out_names = chain_file_names(r.output_file, r.id, n);
  std::vector<std::unique_ptr<std::ofstream>> streams;
  std::vector<csv_writer> sample_writers, diag_writers;
  for (size_t i = 0; i < n; ++i) {
    streams.push_back(r.open_output(out_names[i]));
    sample_writers.emplace_back(streams.back().get());
    r.write_config(sample_writers.back());
  }
  if (!r.diagnostic_file.empty()) {
    std::vector<std::string> dnames = chain_file_names(r.diagnostic_file, r.id, n);
    for (size_t i = 0; i < n; ++i) {
      streams.push_back(r.open_output(dnames[i]));
      diag_writers.emplace_back(streams.back().get());
      r.write_config(diag_writers.back());
    }
  } else {
    diag_writers.resize(n);
  }
  std::vector<stan::callbacks::writer> init_writers(n);
  std::vector<ctx_ptr> inits = r.inits(n);

  if (fixed)
    return stan::services::sample::fixed_param(
        model, n, inits, r.seed, r.id, r.init_radius, num_samples, thin, r.refresh,
        r.interrupt, r.logger, init_writers, sample_writers, diag_writers);

  std::string metric = r.gets(H + "metric");
  const std::string& metric_file = r.gets(H + "metric_file");
  double stepsize = r.getd(H + "stepsize");
  double jitter = r.getd(H + "stepsize_jitter");
  size_t np = model.num_params_r();
  std::vector<ctx_ptr> metrics;
  if (metric != "unit_e") {
    if (!metric_file.empty()) {
      for (auto& f : resolve_per_chain(metric_file, r.id, n, "metric", {".json", ".R"}))
        metrics.push_back(read_var_context(f));
    } else {
      for (size_t i = 0; i < n; ++i) metrics.push_back(unit_metric(np, metric == "dense_e"));
    }
  }
  std::vector<metric_writer_t> metric_writers;
  for (size_t i = 0; i < n; ++i) {
    if (save_metric && adapt) {
      std::string base = out_names[i];
      if (ends_with(base, ".csv")) base = base.substr(0, base.size() - 4);
      metric_writers.emplace_back(
          std::unique_ptr<std::ofstream>(new std::ofstream(base + "_metric.json")));
    } else {
      metric_writers.emplace_back();
    }
  }

  namespace ss = stan::services::sample;
  if (engine == "nuts") {
    int max_depth = r.geti(H + "engine.nuts.max_depth");
    if (metric == "unit_e") {
      if (adapt)
        return ss::hmc_nuts_unit_e_adapt(
            model, n, inits, r.seed, r.id, r.init_radius, num_warmup, num_samples, thin,
            save_warmup, r.refresh, stepsize, jitter, max_depth, delta, gamma, kappa, t0,
            r.interrupt, r.logger, init_writers, sample_writers, diag_writers,
            metric_writers);
      return ss::hmc_nuts_unit_e(model, n, inits, r.seed, r.id, r.init_radius,
                                 num_warmup, num_samples, thin, save_warmup, r.refresh,
                                 stepsize, jitter, max_depth, r.interrupt, r.logger,
                                 init_writers, sample_writers, diag_writers);
    }
    if (metric == "diag_e") {
      if (adapt)
        return ss::hmc_nuts_diag_e_adapt(
            model, n, inits, metrics, r.seed, r.id, r.init_radius, num_warmup,
            num_samples, thin, save_warmup, r.refresh, stepsize, jitter, max_depth,
            delta, gamma, kappa, t0, init_buffer, term_buffer, window, r.interrupt,
            r.logger, init_writers, sample_writers, diag_writers, metric_writers);
      return ss::hmc_nuts_diag_e(model, n, inits, metrics, r.seed, r.id, r.init_radius,
                                 num_warmup, num_samples, thin, save_warmup, r.refresh,
                                 stepsize, jitter, max_depth, r.interrupt, r.logger,
                                 init_writers, sample_writers, diag_writers);
    }
    if (adapt)
      return ss::hmc_nuts_dense_e_adapt(
          model, n, inits, metrics, r.seed, r.id, r.init_radius, num_warmup,
          num_samples, thin, save_warmup, r.refresh, stepsize, jitter, max_depth, delta,
          gamma, kappa, t0, init_buffer, term_buffer, window, r.interrupt, r.logger,
          init_writers, sample_writers, diag_writers, metric_writers);
    return ss::hmc_nuts_dense_e(model, n, inits, metrics, r.seed, r.id, r.init_radius,
                                num_warmup, num_samples, thin, save_warmup, r.refresh,
                                stepsize, jitter, max_depth, r.interrupt, r.logger,
                                init_writers, sample_writers, diag_writers);
  }

  // Static HMC: single chain only.
  double int_time = r.getd(H + "engine.static.int_time");
  stan::callbacks::writer& iw = init_writers[0];
  csv_writer& sw = sample_writers[0];
  csv_writer& dw = diag_writers[0];
  if (metric == "unit_e") {
    if (adapt)
      return ss::hmc_static_unit_e_adapt(model, *inits[0], r.seed, r.id, r.init_radius,
                                         num_warmup, num_samples, thin, save_warmup,
                                         r.refresh, stepsize, jitter, int_time, delta,
                                         gamma, kappa, t0, r.interrupt, r.logger, iw, sw,
                                         dw);
    return ss::hmc_static_unit_e(model, *inits[0], r.seed, r.id, r.init_radius,
                                 num_warmup, num_samples, thin, save_warmup, r.refresh,
                                 stepsize, jitter, int_time, r.interrupt, r.logger, iw,
                                 sw, dw);
  }
  if (metric == "diag_e") {
    if (adapt)
      return ss::hmc_static_diag_e_adapt(
          model, *inits[0], *metrics[0], r.seed, r.id, r.init_radius, num_warmup,
          num_samples, thin, save_warmup, r.refresh, stepsize, jitter, int_time, delta,
          gamma, kappa, t0, init_buffer, term_buffer, window, r.interrupt, r.logger, iw,
          sw, dw);
    return ss::hmc_static_diag_e(model, *inits[0], *metrics[0], r.seed, r.id,
                                 r.init_radius, num_warmup, num_samples, thin,
                                 save_warmup, r.refresh, stepsize, jitter, int_time,
                                 r.interrupt, r.logger, iw, sw, dw);
  }
  if (adapt)
    return ss::hmc_static_dense_e_adapt(
        model, *inits[0], *metrics[0], r.seed, r.id, r.init_radius, num_warmup,
        num_samples, thin, save_warmup, r.refresh, stepsize, jitter, int_time, delta,
        gamma, kappa, t0, init_buffer, term_buffer, window, r.interrupt, r.logger, iw, sw,
        dw);
  return ss::hmc_static_dense_e(model, *inits[0], *metrics[0], r.seed, r.id,
                                r.init_radius, num_warmup, num_samples, thin, save_warmup,
                                r.refresh, stepsize, jitter, int_time, r.interrupt,
                                r.logger, iw, sw, dw);
}

}  // namespace bglmm
