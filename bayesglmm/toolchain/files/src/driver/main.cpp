// bayesglmm CmdStan-compatible driver: entry point, info/help, method dispatch,
// and the light-weight methods (generate_quantities, log_prob, diagnose).
#include "driver.hpp"

#include <stan/io/empty_var_context.hpp>
#include <stan/io/json/json_data.hpp>
#include <stan/math/prim/core/init_threadpool_tbb.hpp>
#include <stan/math/rev/core/profiling.hpp>
#include <stan/model/log_prob_grad.hpp>
#include <stan/services/diagnose/diagnose.hpp>
#include <stan/services/sample/standalone_gqs.hpp>
#include <stan/version.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <thread>

stan::math::profile_map& get_stan_profile_data();

namespace bglmm {

namespace {

void print_info(std::ostream& os) {
  os << "stan_version_major = " << stan::MAJOR_VERSION << '\n'
     << "stan_version_minor = " << stan::MINOR_VERSION << '\n'
     << "stan_version_patch = " << stan::PATCH_VERSION << '\n'
#ifdef STAN_THREADS
     << "STAN_THREADS=true\n"
#else
     << "STAN_THREADS=false\n"
#endif
     << "STAN_MPI=false\n"
     << "STAN_OPENCL=false\n"
     << "STAN_NO_RANGE_CHECKS=false\n"
     << "STAN_CPP_OPTIMS=false\n";
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

bool is_number(const std::string& s, double& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return end && *end == '\0' && std::isfinite(v);
}

void write_profiles(const std::string& path) {
  stan::math::profile_map& profiles = get_stan_profile_data();
  if (profiles.empty()) return;
  std::ofstream out(path);
  if (!out.good()) {
    std::cerr << "Cannot open profile file \"" << path << "\"" << std::endl;
    return;
  }
  out << "name,thread_id,total_time,forward_time,reverse_time,chain_stack,"
         "no_chain_stack,autodiff_calls,no_autodiff_calls\n";
  for (auto& p : profiles) {
    const stan::math::profile_info& info = p.second;
    std::ostringstream tid;
    tid << p.first.second;
    out << p.first.first << ',' << tid.str() << ','
        << info.get_fwd_time() + info.get_rev_time() << ',' << info.get_fwd_time()
        << ',' << info.get_rev_time() << ',' << info.get_chain_stack_used() << ','
        << info.get_nochain_stack_used() << ',' << info.get_num_AD_fwd_passes() << ','
        << info.get_num_no_AD_fwd_passes() << '\n';
  }
}

int clamp_status(int code) { return code == 0 ? 0 : (code > 0 && code < 256 ? code : 1); }

}  // namespace

// ---------------------------------------------------------------- generate_quantities
int run_generate_quantities(Run& r) {
  const std::string& fitted = r.gets("method.generate_quantities.fitted_params");
  if (fitted.empty())
    throw std::invalid_argument(
        "Missing fitted_params argument, cannot run generate_quantities without "
        "fitted sample.");
  size_t n = r.geti("method.generate_quantities.num_chains");
  std::vector<std::string> in_files = resolve_per_chain(fitted, r.id, n, "fitted_params",
                                                        {".csv"});
  std::vector<std::string> out_files = chain_file_names(r.output_file, r.id, n);
  int rc = 0;
  for (size_t c = 0; c < n && rc == 0; ++c) {
    csv_table t = read_csv(in_files[c]);
    std::vector<int> cols = param_columns(*r.model, t.header, in_files[c]);
    Eigen::MatrixXd draws(t.rows.size(), cols.size());
    for (size_t i = 0; i < t.rows.size(); ++i)
      for (size_t j = 0; j < cols.size(); ++j) draws(i, j) = t.rows[i][cols[j]];
    auto os = r.open_output(out_files[c]);
    csv_writer w(os.get());
    r.write_config(w);
    rc = stan::services::standalone_generate(*r.model, draws, r.seed, r.interrupt,
                                             r.logger, w);
  }
  return rc;
}

// ---------------------------------------------------------------- log_prob
int run_log_prob(Run& r) {
  const std::string& upath = r.gets("method.log_prob.unconstrained_params");
  const std::string& cpath = r.gets("method.log_prob.constrained_params");
  bool jacobian = r.getb("method.log_prob.jacobian");
  if (upath.empty() == cpath.empty())
    throw std::invalid_argument(
        "log_prob requires exactly one of unconstrained_params or "
        "constrained_params.");
  stan::model::model_base& model = *r.model;
  size_t n = model.num_params_r();
  std::vector<std::vector<double>> sets;
  if (!cpath.empty()) {
    if (ends_with(cpath, ".csv")) {
      csv_table t = read_csv(cpath);
      for (auto& row : t.rows) {
        Eigen::VectorXd u = unconstrain_row(model, t.header, row, cpath);
        sets.emplace_back(u.data(), u.data() + u.size());
      }
    } else {
      auto ctx = read_var_context(cpath);
      std::vector<int> params_i;
      std::vector<double> params_r;
      std::stringstream msg;
      model.transform_inits(*ctx, params_i, params_r, &msg);
      if (!msg.str().empty()) std::cout << msg.str();
      sets.push_back(params_r);
    }
  } else {
    if (ends_with(upath, ".csv")) {
      csv_table t = read_csv(upath);
      for (auto& row : t.rows) {
        if (row.size() != n)
          throw std::invalid_argument("Wrong number of unconstrained parameters in \""
                                      + upath + "\"");
        sets.push_back(row);
      }
    } else {
      auto ctx = read_var_context(upath);
      if (!ctx->contains_r("params_r"))
        throw std::invalid_argument("Variable params_r not found in \"" + upath + "\"");
      std::vector<double> vals = ctx->vals_r("params_r");
      std::vector<size_t> dims = ctx->dims_r("params_r");
      if (dims.size() == 1) {
        if (dims[0] != n)
          throw std::invalid_argument("params_r has the wrong size in \"" + upath
                                      + "\"");
        sets.push_back(vals);
      } else if (dims.size() == 2 && dims[1] == n) {
        for (size_t i = 0; i < dims[0]; ++i) {
          std::vector<double> row(n);
          for (size_t j = 0; j < n; ++j) row[j] = vals[i + j * dims[0]];
          sets.push_back(row);
        }
      } else {
        throw std::invalid_argument("params_r has the wrong shape in \"" + upath
                                    + "\"");
      }
    }
  }
  auto os = r.open_output(r.output_file);
  csv_writer w(os.get());
  r.write_config(w);
  std::vector<std::string> names;
  model.unconstrained_param_names(names, false, false);
  std::vector<std::string> header{"lp__"};
  for (auto& nm : names) header.push_back("g_" + nm);
  w(header);
  std::vector<int> params_i;
  for (auto& params_r : sets) {
    std::vector<double> grad;
    std::stringstream msg;
    double lp;
    if (jacobian)
      lp = stan::model::log_prob_grad<true, true>(model, params_r, params_i, grad, &msg);
    else
      lp = stan::model::log_prob_grad<true, false>(model, params_r, params_i, grad,
                                                   &msg);
    if (!msg.str().empty()) std::cout << msg.str();
    std::vector<double> row{lp};
    row.insert(row.end(), grad.begin(), grad.end());
    w(row);
  }
  return 0;
}

// ---------------------------------------------------------------- diagnose
int run_diagnose(Run& r) {
  if (r.model->num_params_r() == 0)
    throw std::invalid_argument("Model contains no parameters, cannot run diagnose.");
  double epsilon = r.getd("method.diagnose.test.gradient.epsilon");
  double error = r.getd("method.diagnose.test.gradient.error");
  auto init = r.inits(1);
  auto os = r.open_output(r.output_file);
  csv_writer w(os.get());
  r.write_config(w);
  stan::callbacks::writer init_writer;
  int failed = stan::services::diagnose::diagnose(*r.model, *init[0], r.seed, r.id,
                                                  r.init_radius, epsilon, error,
                                                  r.interrupt, r.logger, init_writer, w);
  return failed;
}

}  // namespace bglmm

int main(int argc, const char* argv[]) {
  using namespace bglmm;
  std::vector<std::string> tokens(argv + 1, argv + argc);
  for (auto& t : tokens) {
    if (t == "info") {
      print_info(std::cout);
      return 0;
    }
    if (t == "help" || t == "help-all") {
      print_help(std::cout);
      if (t == "help-all") {
        std::cout << "Argument tree with default values:\n\n";
        print_tree(*make_tree("1"), std::cout, "  ");
      }
      return 0;
    }
  }
  Run r;
  try {
    // Threads: STAN_NUM_THREADS gives the default of num_threads.
    std::string env_threads;
    if (const char* e = std::getenv("STAN_NUM_THREADS")) env_threads = e;
    if (!env_threads.empty()) {
      char* end = nullptr;
      long long v = std::strtoll(env_threads.c_str(), &end, 10);
      if (!end || *end || v == 0 || v < -1 || v > 1000000)
        throw usage_error("Invalid STAN_NUM_THREADS value: " + env_threads);
    }
    std::unique_ptr<Arg> root = make_tree(env_threads.empty() ? "1" : env_threads);
    r.root = root.get();
    if (tokens.empty()) {
      print_help(std::cerr);
      return 1;
    }
    parse_args(*root, tokens);
    Arg& nt = *root->child("num_threads");
    if (nt.given && !env_threads.empty() && nt.value != nt.def)
      throw usage_error("Number of threads given by num_threads (" + nt.value
                        + ") and STAN_NUM_THREADS (" + env_threads + ") disagree.");
    int num_threads = std::stoi(nt.value);
    if (num_threads == -1) num_threads = std::max(1u, std::thread::hardware_concurrency());
    if (num_threads < 1) throw usage_error("num_threads must be positive or -1");

    // Seed: -1 means derive from the clock.
    long long seed = std::stoll(r.gets("random.seed"));
    if (seed < 0) {
      auto now = std::chrono::system_clock::now().time_since_epoch();
      seed = std::chrono::duration_cast<std::chrono::milliseconds>(now).count()
             % 4294967296LL;
      r.arg("random.seed").value = std::to_string(seed);
    }
    r.seed = static_cast<unsigned int>(seed);
    r.id = static_cast<unsigned int>(r.geti("id"));
    r.init = r.gets("init");
    double radius;
    if (is_number(r.init, radius)) {
      if (radius < 0) throw usage_error(r.init + " is not a valid value for \"init\"");
      r.init_radius = radius;
      r.init_is_file = false;
    } else {
      r.init_radius = 2.0;
      r.init_is_file = true;
    }
    r.output_file = r.gets("output.file");
    r.diagnostic_file = r.gets("output.diagnostic_file");
    r.profile_file = r.gets("output.profile_file");
    r.data_file = r.gets("data.file");
    r.refresh = r.geti("output.refresh");
    r.sig_figs = r.geti("output.sig_figs");
    r.start_datetime = utc_now();
    std::cout.precision(r.sig_figs >= 0 ? r.sig_figs : 6);

    stan::math::init_threadpool_tbb(num_threads);

    print_tree(*root, std::cout, "");
    std::cout << std::endl;

    std::shared_ptr<stan::io::var_context> data;
    if (r.data_file.empty())
      data = std::make_shared<stan::io::empty_var_context>();
    else
      data = read_var_context(r.data_file);
    stan::model::model_base& model = new_model(*data, r.seed, &std::cout);
    r.model = &model;

    const std::string& method = r.gets("method");
    int rc;
    if (method == "sample")
      rc = run_sample(r);
    else if (method == "optimize")
      rc = run_optimize(r);
    else if (method == "laplace")
      rc = run_laplace(r);
    else if (method == "variational")
      rc = run_variational(r);
    else if (method == "pathfinder")
      rc = run_pathfinder(r);
    else if (method == "generate_quantities")
      rc = run_generate_quantities(r);
    else if (method == "log_prob")
      rc = run_log_prob(r);
    else if (method == "diagnose")
      rc = run_diagnose(r);
    else
      throw usage_error("Unknown method " + method);
    std::cout.flush();
    write_profiles(r.profile_file);
    return clamp_status(rc);
  } catch (const usage_error& e) {
    std::cerr << e.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << e.what() << std::endl;
    return 1;
  }
}
