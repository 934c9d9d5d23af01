// method=variational (ADVI meanfield/fullrank) and method=pathfinder (single and
// multi-path with PSIS resampling).
#include "driver.hpp"

#include <stan/callbacks/json_writer.hpp>
#include <stan/callbacks/structured_writer.hpp>
#include <stan/services/experimental/advi/fullrank.hpp>
#include <stan/services/experimental/advi/meanfield.hpp>
#include <stan/services/pathfinder/multi.hpp>
#include <stan/services/pathfinder/single.hpp>

namespace bglmm {

using model_t = stan::model::model_base;

int run_variational(Run& r) {
  model_t& model = *r.model;
  if (model.num_params_r() == 0)
    throw std::invalid_argument(
        "Model contains no parameters, only the sample method with the fixed_param "
        "algorithm can be used.");
  const std::string V = "method.variational.";
  const std::string& algo = r.gets(V + "algorithm");
  int iter = r.geti(V + "iter");
  int grad_samples = r.geti(V + "grad_samples");
  int elbo_samples = r.geti(V + "elbo_samples");
  double eta = r.getd(V + "eta");
  bool adapt = r.getb(V + "adapt.engaged");
  int adapt_iter = r.geti(V + "adapt.iter");
  double tol_rel_obj = r.getd(V + "tol_rel_obj");
  int eval_elbo = r.geti(V + "eval_elbo");
  int output_samples = r.geti(V + "output_samples");
  auto init = r.inits(1);
  auto os = r.open_output(r.output_file);
  csv_writer w(os.get());
  r.write_config(w);
  std::unique_ptr<std::ofstream> dos;
  csv_writer dw;
  if (!r.diagnostic_file.empty()) {
    dos = r.open_output(r.diagnostic_file);
    dw = csv_writer(dos.get());
    r.write_config(dw);
  }
  stan::callbacks::writer init_writer;
  namespace sa = stan::services::experimental::advi;
  if (algo == "fullrank")
    return sa::fullrank(model, *init[0], r.seed, r.id, r.init_radius, grad_samples,
                        elbo_samples, iter, tol_rel_obj, eta, adapt, adapt_iter,
                        eval_elbo, output_samples, r.interrupt, r.logger, init_writer, w,
                        dw);
  return sa::meanfield(model, *init[0], r.seed, r.id, r.init_radius, grad_samples,
                       elbo_samples, iter, tol_rel_obj, eta, adapt, adapt_iter, eval_elbo,
                       output_samples, r.interrupt, r.logger, init_writer, w, dw);
}

int run_pathfinder(Run& r) {
  model_t& model = *r.model;
  if (model.num_params_r() == 0)
    throw std::invalid_argument(
        "Model contains no parameters, cannot run pathfinder.");
  const std::string P = "method.pathfinder.";
  double init_alpha = r.getd(P + "init_alpha");
  double tol_obj = r.getd(P + "tol_obj");
  double tol_rel_obj = r.getd(P + "tol_rel_obj");
  double tol_grad = r.getd(P + "tol_grad");
  double tol_rel_grad = r.getd(P + "tol_rel_grad");
  double tol_param = r.getd(P + "tol_param");
  int history = r.geti(P + "history_size");
  int num_psis_draws = r.geti(P + "num_psis_draws");
  int num_paths = r.geti(P + "num_paths");
  bool save_single = r.getb(P + "save_single_paths");
  bool psis_resample = r.getb(P + "psis_resample");
  bool calculate_lp = r.getb(P + "calculate_lp");
  int max_iters = r.geti(P + "max_lbfgs_iters");
  int num_draws = r.geti(P + "num_draws");
  int num_elbo_draws = r.geti(P + "num_elbo_draws");

  std::string base = r.output_file;
  if (ends_with(base, ".csv")) base = base.substr(0, base.size() - 4);
  auto os = r.open_output(r.output_file);
  csv_writer w(os.get());
  r.write_config(w);
  using json_t = stan::callbacks::json_writer<std::ofstream>;
  namespace sp = stan::services::pathfinder;

  if (num_paths == 1) {
    auto init = r.inits(1);
    stan::callbacks::writer init_writer;
    std::string dpath = r.diagnostic_file;
    if (ends_with(dpath, ".csv")) dpath = dpath.substr(0, dpath.size() - 4) + ".json";
    std::unique_ptr<json_t> diag(
        dpath.empty() ? new json_t()
                      : new json_t(std::unique_ptr<std::ofstream>(new std::ofstream(dpath))));
    return sp::pathfinder_lbfgs_single<false>(
        model, *init[0], r.seed, r.id, r.init_radius, history, init_alpha, tol_obj,
        tol_rel_obj, tol_grad, tol_rel_grad, tol_param, max_iters, num_elbo_draws,
        num_draws, false, r.refresh, r.interrupt, r.logger, init_writer, w, *diag,
        calculate_lp);
  }

  auto inits = r.inits(num_paths);
  std::vector<stan::callbacks::writer> init_writers(num_paths);
  std::vector<std::unique_ptr<std::ofstream>> path_streams;
  std::vector<csv_writer> path_writers;
  std::vector<json_t> path_diags;
  bool write_paths = save_single || !r.diagnostic_file.empty();
  for (int i = 0; i < num_paths; ++i) {
    if (write_paths) {
      std::string stem = base + "_path_" + std::to_string(r.id + i);
      path_streams.push_back(r.open_output(stem + ".csv"));
      path_writers.emplace_back(path_streams.back().get());
      r.write_config(path_writers.back());
      path_diags.emplace_back(
          std::unique_ptr<std::ofstream>(new std::ofstream(stem + ".json")));
    } else {
      path_writers.emplace_back();
      path_diags.emplace_back();
    }
  }
  stan::callbacks::structured_writer diag;
  return sp::pathfinder_lbfgs_multi(
      model, inits, r.seed, r.id, r.init_radius, history, init_alpha, tol_obj,
      tol_rel_obj, tol_grad, tol_rel_grad, tol_param, max_iters, num_elbo_draws,
      num_draws, num_psis_draws, num_paths, false, r.refresh, r.interrupt, r.logger,
      init_writers, path_writers, path_diags, w, diag, calculate_lp, psis_resample);
}

}  // namespace bglmm
