// method=optimize (lbfgs, bfgs, newton; optional Jacobian) and method=laplace.
#include "driver.hpp"

#include <stan/callbacks/structured_writer.hpp>
#include <stan/services/optimize/bfgs.hpp>
#include <stan/services/optimize/laplace_sample.hpp>
#include <stan/services/optimize/lbfgs.hpp>
#include <stan/services/optimize/newton.hpp>

namespace bglmm {

using model_t = stan::model::model_base;

int run_optimize(Run& r) {
  model_t& model = *r.model;
  if (model.num_params_r() == 0)
    throw std::invalid_argument(
        "Model contains no parameters, only the sample method with the fixed_param "
        "algorithm can be used.");
  const std::string O = "method.optimize.";
  const std::string& algo = r.gets(O + "algorithm");
  bool jacobian = r.getb(O + "jacobian");
  int iter = r.geti(O + "iter");
  bool save_iterations = r.getb(O + "save_iterations");
  auto init = r.inits(1);
  auto os = r.open_output(r.output_file);
  csv_writer w(os.get());
  r.write_config(w);
  stan::callbacks::writer init_writer;
  namespace so = stan::services::optimize;
  if (algo == "newton") {
    if (jacobian)
      return so::newton<model_t, true>(model, *init[0], r.seed, r.id, r.init_radius, iter,
                                       save_iterations, r.interrupt, r.logger,
                                       init_writer, w);
    return so::newton<model_t, false>(model, *init[0], r.seed, r.id, r.init_radius, iter,
                                      save_iterations, r.interrupt, r.logger, init_writer,
                                      w);
  }
  const std::string A = O + "algorithm." + algo + ".";
  double init_alpha = r.getd(A + "init_alpha");
  double tol_obj = r.getd(A + "tol_obj");
  double tol_rel_obj = r.getd(A + "tol_rel_obj");
  double tol_grad = r.getd(A + "tol_grad");
  double tol_rel_grad = r.getd(A + "tol_rel_grad");
  double tol_param = r.getd(A + "tol_param");
  if (algo == "bfgs") {
    if (jacobian)
      return so::bfgs<model_t, true>(model, *init[0], r.seed, r.id, r.init_radius,
                                     init_alpha, tol_obj, tol_rel_obj, tol_grad,
                                     tol_rel_grad, tol_param, iter, save_iterations,
                                     r.refresh, r.interrupt, r.logger, init_writer, w);
    return so::bfgs<model_t, false>(model, *init[0], r.seed, r.id, r.init_radius,
                                    init_alpha, tol_obj, tol_rel_obj, tol_grad,
                                    tol_rel_grad, tol_param, iter, save_iterations,
                                    r.refresh, r.interrupt, r.logger, init_writer, w);
  }
  int history = r.geti(A + "history_size");
  if (jacobian)
    return so::lbfgs<model_t, true>(model, *init[0], r.seed, r.id, r.init_radius,
                                    history, init_alpha, tol_obj, tol_rel_obj, tol_grad,
                                    tol_rel_grad, tol_param, iter, save_iterations,
                                    r.refresh, r.interrupt, r.logger, init_writer, w);
  return so::lbfgs<model_t, false>(model, *init[0], r.seed, r.id, r.init_radius, history,
                                   init_alpha, tol_obj, tol_rel_obj, tol_grad,
                                   tol_rel_grad, tol_param, iter, save_iterations,
                                   r.refresh, r.interrupt, r.logger, init_writer, w);
}

int run_laplace(Run& r) {
  model_t& model = *r.model;
  if (model.num_params_r() == 0)
    throw std::invalid_argument(
        "Model contains no parameters, cannot run the Laplace approximation.");
  const std::string L = "method.laplace.";
  const std::string& mode = r.gets(L + "mode");
  bool jacobian = r.getb(L + "jacobian");
  int draws = r.geti(L + "draws");
  bool calculate_lp = r.getb(L + "calculate_lp");
  if (mode.empty())
    throw std::invalid_argument("Laplace method requires a mode file (argument mode).");
  Eigen::VectorXd theta_hat;
  if (ends_with(mode, ".json")) {
    auto ctx = read_var_context(mode);
    std::stringstream msg;
    model.transform_inits(*ctx, theta_hat, &msg);
    if (!msg.str().empty()) std::cout << msg.str();
  } else {
    csv_table t = read_csv(mode);
    bool is_opt = false;
    bool opt_jacobian = false;
    for (auto& c : t.comments) {
      if (c.find("method = optimize") != std::string::npos) is_opt = true;
      if (c.find("jacobian = true") != std::string::npos) opt_jacobian = true;
    }
    if (!is_opt)
      throw std::invalid_argument("Mode file \"" + mode
                                  + "\" is not the output of method optimize.");
    if (t.rows.empty())
      throw std::invalid_argument("Mode file \"" + mode + "\" contains no estimate.");
    if (opt_jacobian != jacobian)
      r.logger.warn(std::string("Warning: the mode was found with jacobian=")
                    + (opt_jacobian ? "true" : "false")
                    + " but the Laplace approximation uses jacobian="
                    + (jacobian ? "true" : "false") + ".");
    theta_hat = unconstrain_row(model, t.header, t.rows.front(), mode);
  }
  auto os = r.open_output(r.output_file);
  csv_writer w(os.get());
  r.write_config(w);
  stan::callbacks::structured_writer hessian_writer;
  if (jacobian)
    return stan::services::laplace_sample<true>(model, theta_hat, draws, calculate_lp,
                                                r.seed, r.refresh, r.interrupt, r.logger,
                                                w, hessian_writer);
  return stan::services::laplace_sample<false>(model, theta_hat, draws, calculate_lp,
                                               r.seed, r.refresh, r.interrupt, r.logger,
                                               w, hessian_writer);
}

}  // namespace bglmm
