// bayesglmm: implementation of the BridgeStan-2.9-compatible C interface (bridgestan.h)
// on top of the Stan library headers.  Written for this project.
//
// Linked into <model>_model.so together with one model object compiled from stanc's
// C++ (which defines the factory function `new_model`).  Build flavours:
//   default                 Hessians by central finite differences of AD gradients
//   BRIDGESTAN_AD_HESSIAN   Hessians by nested forward-over-reverse AD; needs the model
//                           (and this file) compiled with STAN_MODEL_FVAR_VAR.

#if defined(BRIDGESTAN_AD_HESSIAN) && !defined(STAN_MODEL_FVAR_VAR)
#error "BRIDGESTAN_AD_HESSIAN requires STAN_MODEL_FVAR_VAR (the model must be built with it too)"
#endif

#include "bridgestan.h"

#include <stan/model/model_header.hpp>
#include <stan/io/var_context.hpp>
#include <stan/io/empty_var_context.hpp>
#include <stan/io/chained_var_context.hpp>
#include <stan/io/random_var_context.hpp>
#include <stan/io/json/json_data.hpp>
#include <stan/math/rev/functor/finite_diff_hessian_auto.hpp>
#include <stan/math/rev/functor/finite_diff_hessian_times_vector_auto.hpp>
#include <stan/services/util/create_rng.hpp>
#include <stan/version.hpp>
#ifdef BRIDGESTAN_AD_HESSIAN
#include <stan/math/mix.hpp>
#endif

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <vector>

// Defined at the end of every stanc-generated model header.
stan::model::model_base& new_model(stan::io::var_context& data_context,
                                   unsigned int seed, std::ostream* msg_stream);

extern "C" {
BS_PUBLIC extern const int bs_major_version = 2;
BS_PUBLIC extern const int bs_minor_version = 9;
BS_PUBLIC extern const int bs_patch_version = 0;
}

struct bs_model {
  stan::model::model_base* model = nullptr;
  std::string name;
  std::string info;
  std::string names[4];  // index: 2 * include_tp + include_gq
  int counts[4] = {0, 0, 0, 0};
  std::string unc_names;
  int unc_num = 0;
  ~bs_model() { delete model; }
};

struct bs_rng {
  stan::rng_t rng;
  explicit bs_rng(unsigned int seed)
      : rng(stan::services::util::create_rng(seed, 0)) {}
};

namespace {

// ---------------------------------------------------------------------------------
// Output of the model (print(), reject messages written to the message stream).
// Every thread writes into its own buffer; a complete chunk (at each flush, i.e. at
// std::endl, and at the end of every entry point) is handed to the callback, or to
// std::cout when none is registered, under one library-wide mutex.

std::mutex print_mutex;
std::atomic<STREAM_CALLBACK> print_callback{nullptr};

class callback_buf : public std::streambuf {
 public:
  void deliver() {
    if (buf_.empty())
      return;
    std::lock_guard<std::mutex> lock(print_mutex);
    STREAM_CALLBACK cb = print_callback.load();
    if (cb != nullptr) {
      cb(buf_.data(), buf_.size());
    } else {
      std::cout.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
      std::cout.flush();
    }
    buf_.clear();
  }

 protected:
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof()))
      buf_.push_back(traits_type::to_char_type(c));
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    buf_.append(s, static_cast<size_t>(n));
    return n;
  }
  int sync() override {
    deliver();
    return 0;
  }

 private:
  std::string buf_;
};

struct thread_output {
  callback_buf buf;
  std::ostream os{&buf};
};

thread_output& output() {
  static thread_local thread_output out;
  return out;
}

std::ostream* msgs() { return &output().os; }

void flush_output() noexcept {
  try {
    output().os.flush();
    output().buf.deliver();
  } catch (...) {
  }
}

// ---------------------------------------------------------------------------------
// Every entry point runs through `guarded`: it makes sure the calling thread owns an
// autodiff tape (STAN_THREADS keeps one per thread; a thread that Stan did not create
// has none until a ChainableStack object is constructed on it), turns exceptions into
// an error message, and flushes pending model output.

void ensure_ad_tape() {
  static thread_local stan::math::ChainableStack thread_tape;
  (void)thread_tape;
}

void set_error(char** error_msg, const char* fn, const char* what) noexcept {
  if (error_msg == nullptr)
    return;
  try {
    std::string msg = std::string(fn) + "() failed with exception: " + what + "\n";
    *error_msg = strdup(msg.c_str());
  } catch (...) {
    *error_msg = nullptr;
  }
}

template <typename F>
int guarded(const char* fn, char** error_msg, F&& body) noexcept {
  int rc = -1;
  try {
    ensure_ad_tape();
    body();
    rc = 0;
  } catch (const std::exception& e) {
    set_error(error_msg, fn, e.what());
  } catch (...) {
    set_error(error_msg, fn, "unknown exception");
  }
  flush_output();
  return rc;
}

// ---------------------------------------------------------------------------------
// Log density as a function of the unconstrained parameters.

template <typename T>
T eval_log_prob(const stan::model::model_base& m, bool propto, bool jacobian,
                Eigen::Matrix<T, -1, 1>& x, std::ostream* out) {
  if (propto) {
    if (jacobian)
      return m.template log_prob<true, true>(x, out);
    return m.template log_prob<true, false>(x, out);
  }
  if (jacobian)
    return m.template log_prob<false, true>(x, out);
  return m.template log_prob<false, false>(x, out);
}

// Value only.  Dropping constants (propto) needs autodiff variables: with plain double
// arguments every term would count as constant and be dropped.
double log_density_value(const stan::model::model_base& m, bool propto,
                         bool jacobian, const Eigen::VectorXd& x) {
  if (propto) {
    stan::math::nested_rev_autodiff nested;  // frees the tape on scope exit
    Eigen::Matrix<stan::math::var, -1, 1> xv(x);
    return eval_log_prob(m, true, jacobian, xv, msgs()).val();
  }
  Eigen::VectorXd xd(x);
  return eval_log_prob(m, false, jacobian, xd, msgs());
}

struct log_density_fn {
  const stan::model::model_base& m;
  bool propto;
  bool jacobian;

  double operator()(const Eigen::VectorXd& x) const {
    return log_density_value(m, propto, jacobian, x);
  }
  template <typename T>
  T operator()(const Eigen::Matrix<T, -1, 1>& x) const {
    Eigen::Matrix<T, -1, 1> xc(x);
    return eval_log_prob(m, propto, jacobian, xc, msgs());
  }
};

Eigen::VectorXd to_vector(const double* p, size_t n) {
  Eigen::VectorXd v(static_cast<Eigen::Index>(n));
  for (size_t i = 0; i < n; ++i)
    v(static_cast<Eigen::Index>(i)) = p[i];
  return v;
}

void copy_out(const Eigen::VectorXd& v, double* p, size_t n) {
  if (static_cast<size_t>(v.size()) != n)
    throw std::runtime_error("internal error: result has " + std::to_string(v.size())
                             + " elements, expected " + std::to_string(n));
  for (size_t i = 0; i < n; ++i)
    p[i] = v(static_cast<Eigen::Index>(i));
}

// ---------------------------------------------------------------------------------
// Data / JSON contexts.

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good())
    throw std::runtime_error("Cannot read input file: " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad())
    throw std::runtime_error("Cannot read input file: " + path);
  return ss.str();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size()
         && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::unique_ptr<stan::io::var_context> json_context(const std::string& text) {
  std::istringstream in(text);
  return std::unique_ptr<stan::io::var_context>(new stan::json::json_data(in));
}

// data: NULL or "" -> no data; "<...>.json" -> file path; otherwise JSON text.
std::unique_ptr<stan::io::var_context> data_context(const char* data) {
  if (data == nullptr || data[0] == '\0')
    return std::unique_ptr<stan::io::var_context>(new stan::io::empty_var_context());
  std::string s(data);
  if (ends_with(s, ".json"))
    return json_context(read_file(s));
  return json_context(s);
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0)
      out += ',';
    out += v[i];
  }
  return out;
}

std::string build_info(const stan::model::model_base& m) {
  std::ostringstream s;
  s << "BridgeStan version: " << bs_major_version << '.' << bs_minor_version << '.'
    << bs_patch_version << '\n';
  s << "Stan version: " << STAN_MAJOR << '.' << STAN_MINOR << '.' << STAN_PATCH << '\n';
  s << "Stan C++ Defines:\n";
#ifdef STAN_THREADS
  s << "\tSTAN_THREADS=true\n";
#else
  s << "\tSTAN_THREADS=false\n";
#endif
#ifdef STAN_MPI
  s << "\tSTAN_MPI=true\n";
#else
  s << "\tSTAN_MPI=false\n";
#endif
#ifdef STAN_OPENCL
  s << "\tSTAN_OPENCL=true\n";
#else
  s << "\tSTAN_OPENCL=false\n";
#endif
#ifdef STAN_NO_RANGE_CHECKS
  s << "\tSTAN_NO_RANGE_CHECKS=true\n";
#else
  s << "\tSTAN_NO_RANGE_CHECKS=false\n";
#endif
#ifdef BRIDGESTAN_AD_HESSIAN
  s << "\tBRIDGESTAN_AD_HESSIAN=true\n";
#else
  s << "\tBRIDGESTAN_AD_HESSIAN=false\n";
#endif
  s << "Stan Compiler Details:\n";
  for (const std::string& line : m.model_compile_info())
    s << '\t' << line << '\n';
  return s.str();
}

int name_index(bool tp, bool gq) { return 2 * (tp ? 1 : 0) + (gq ? 1 : 0); }

}  // namespace

// ===================================================================================
// The C interface.

extern "C" {

BS_PUBLIC bs_model* bs_model_construct(const char* data, unsigned int seed,
                                       char** error_msg) {
  bs_model* result = nullptr;
  guarded("construct", error_msg, [&]() {
    std::unique_ptr<bs_model> bm(new bs_model());
    {
      std::unique_ptr<stan::io::var_context> ctx = data_context(data);
      bm->model = &new_model(*ctx, seed, msgs());
    }
    const stan::model::model_base& m = *bm->model;
    bm->name = m.model_name();
    bm->info = build_info(m);
    for (int tp = 0; tp < 2; ++tp) {
      for (int gq = 0; gq < 2; ++gq) {
        std::vector<std::string> names;
        m.constrained_param_names(names, tp != 0, gq != 0);
        bm->names[name_index(tp, gq)] = join(names);
        bm->counts[name_index(tp, gq)] = static_cast<int>(names.size());
      }
    }
    std::vector<std::string> unc;
    m.unconstrained_param_names(unc, false, false);
    bm->unc_names = join(unc);
    bm->unc_num = static_cast<int>(m.num_params_r());
    if (static_cast<size_t>(bm->unc_num) != unc.size())
      throw std::runtime_error("model reports " + std::to_string(bm->unc_num)
                               + " unconstrained parameters but "
                               + std::to_string(unc.size()) + " names");
    result = bm.release();
  });
  return result;
}

BS_PUBLIC void bs_model_destruct(bs_model* m) {
  try {
    delete m;
  } catch (...) {
  }
}

BS_PUBLIC void bs_free_error_msg(char* error_msg) { free(error_msg); }

BS_PUBLIC int bs_set_print_callback(STREAM_CALLBACK callback, char** error_msg) {
  (void)error_msg;
  std::lock_guard<std::mutex> lock(print_mutex);
  print_callback.store(callback);
  return 0;
}

BS_PUBLIC const char* bs_name(const bs_model* m) { return m->name.c_str(); }

BS_PUBLIC const char* bs_model_info(const bs_model* m) { return m->info.c_str(); }

BS_PUBLIC int bs_param_num(const bs_model* m, bool include_tp, bool include_gq) {
  return m->counts[name_index(include_tp, include_gq)];
}

BS_PUBLIC int bs_param_unc_num(const bs_model* m) { return m->unc_num; }

BS_PUBLIC const char* bs_param_names(const bs_model* m, bool include_tp,
                                     bool include_gq) {
  return m->names[name_index(include_tp, include_gq)].c_str();
}

BS_PUBLIC const char* bs_param_unc_names(const bs_model* m) {
  return m->unc_names.c_str();
}

BS_PUBLIC int bs_param_constrain(const bs_model* m, bool include_tp,
                                 bool include_gq, const double* theta_unc,
                                 double* theta, bs_rng* rng, char** error_msg) {
  return guarded("param_constrain", error_msg, [&]() {
    if (include_gq && rng == nullptr)
      throw std::invalid_argument(
          "A random number generator (rng) is required when include_gq is true; "
          "got a null pointer");
    static thread_local stan::rng_t dummy_rng
        = stan::services::util::create_rng(0, 0);
    stan::rng_t& r = rng != nullptr ? rng->rng : dummy_rng;
    Eigen::VectorXd unc = to_vector(theta_unc, m->unc_num);
    Eigen::VectorXd out;
    m->model->write_array(r, unc, out, include_tp, include_gq, msgs());
    copy_out(out, theta, m->counts[name_index(include_tp, include_gq)]);
  });
}

BS_PUBLIC int bs_param_unconstrain(const bs_model* m, const double* theta,
                                   double* theta_unc, char** error_msg) {
  return guarded("param_unconstrain", error_msg, [&]() {
    Eigen::VectorXd con = to_vector(theta, m->counts[0]);
    Eigen::VectorXd unc;
    m->model->unconstrain_array(con, unc, msgs());
    copy_out(unc, theta_unc, m->unc_num);
  });
}

BS_PUBLIC int bs_param_unconstrain_json(const bs_model* m, const char* json,
                                        double* theta_unc, char** error_msg) {
  return guarded("param_unconstrain_json", error_msg, [&]() {
    std::unique_ptr<stan::io::var_context> ctx
        = json_context(json == nullptr ? std::string() : std::string(json));
    Eigen::VectorXd unc;
    m->model->transform_inits(*ctx, unc, msgs());
    copy_out(unc, theta_unc, m->unc_num);
  });
}

BS_PUBLIC int bs_param_initialize(const bs_model* m, const char* json,
                                  bs_rng* rng, double init_radius,
                                  int max_tries, bool jacobian,
                                  double* theta_unc, char** error_msg) {
  return guarded("param_initialize", error_msg, [&]() {
    if (rng == nullptr)
      throw std::invalid_argument("A random number generator (rng) is required; got a null pointer");
    if (!(init_radius >= 0) || !std::isfinite(init_radius))
      throw std::domain_error("init_radius must be finite and non-negative; got "
                              + std::to_string(init_radius));
    const stan::model::model_base& model = *m->model;
    std::unique_ptr<stan::io::var_context> user
        = (json == nullptr || json[0] == '\0')
              ? std::unique_ptr<stan::io::var_context>(new stan::io::empty_var_context())
              : json_context(json);
    std::vector<std::string> pnames;
    model.get_param_names(pnames, false, false);
    bool all_given = true;
    for (const std::string& n : pnames)
      all_given = all_given && user->contains_r(n);
    const bool zero = init_radius == 0.0;
    // A deterministic candidate cannot improve by retrying.
    const int tries = (all_given || zero) ? 1 : std::max(1, max_tries);
    const log_density_fn f{model, false, jacobian};
    std::string last_error;
    for (int t = 0; t < tries; ++t) {
      Eigen::VectorXd unc;
      try {
        stan::io::random_var_context random(model, rng->rng, init_radius, zero);
        stan::io::chained_var_context ctx(*user, random);
        model.transform_inits(ctx, unc, msgs());
      } catch (const std::domain_error& e) {
        last_error = e.what();
        continue;
      }
      double lp = 0;
      Eigen::VectorXd grad;
      try {
        stan::math::gradient(f, unc, lp, grad);
      } catch (const std::domain_error& e) {
        last_error = e.what();
        continue;
      }
      if (!std::isfinite(lp)) {
        last_error = "log density is " + std::to_string(lp);
        continue;
      }
      if (!grad.allFinite()) {
        last_error = "gradient of the log density is not finite";
        continue;
      }
      copy_out(unc, theta_unc, m->unc_num);
      return;
    }
    throw std::domain_error("Initialization failed after " + std::to_string(tries)
                            + (tries == 1 ? " attempt" : " attempts")
                            + "; last error: " + last_error);
  });
}

BS_PUBLIC int bs_log_density(const bs_model* m, bool propto, bool jacobian,
                             const double* theta_unc, double* lp,
                             char** error_msg) {
  return guarded("log_density", error_msg, [&]() {
    Eigen::VectorXd x = to_vector(theta_unc, m->unc_num);
    *lp = log_density_value(*m->model, propto, jacobian, x);
  });
}

BS_PUBLIC int bs_log_density_gradient(const bs_model* m, bool propto,
                                      bool jacobian, const double* theta_unc,
                                      double* lp, double* grad,
                                      char** error_msg) {
  return guarded("log_density_gradient", error_msg, [&]() {
    Eigen::VectorXd x = to_vector(theta_unc, m->unc_num);
    Eigen::VectorXd g;
    double val = 0;
    stan::math::gradient(log_density_fn{*m->model, propto, jacobian}, x, val, g);
    *lp = val;
    copy_out(g, grad, m->unc_num);
  });
}

BS_PUBLIC int bs_log_density_hessian(const bs_model* m, bool propto,
                                     bool jacobian, const double* theta_unc,
                                     double* lp, double* grad, double* hessian,
                                     char** error_msg) {
  return guarded("log_density_hessian", error_msg, [&]() {
    const size_t n = static_cast<size_t>(m->unc_num);
    Eigen::VectorXd x = to_vector(theta_unc, n);
    Eigen::VectorXd g;
    Eigen::MatrixXd H;
    double val = 0;
    const log_density_fn f{*m->model, propto, jacobian};
#ifdef BRIDGESTAN_AD_HESSIAN
    stan::math::hessian(f, x, val, g, H);
#else
    if (n == 0) {
      val = f(x);
      g.resize(0);
      H.resize(0, 0);
    } else {
      stan::math::internal::finite_diff_hessian_auto(f, x, val, g, H);
    }
#endif
    *lp = val;
    copy_out(g, grad, n);
    for (size_t j = 0; j < n; ++j)
      for (size_t i = 0; i < n; ++i)
        hessian[j * n + i] = H(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
  });
}

BS_PUBLIC int bs_log_density_hessian_vector_product(
    const bs_model* m, bool propto, bool jacobian, const double* theta_unc,
    const double* v, double* lp, double* hvp, char** error_msg) {
  return guarded("log_density_hessian_vector_product", error_msg, [&]() {
    const size_t n = static_cast<size_t>(m->unc_num);
    Eigen::VectorXd x = to_vector(theta_unc, n);
    Eigen::VectorXd vv = to_vector(v, n);
    Eigen::VectorXd out;
    double val = 0;
    const log_density_fn f{*m->model, propto, jacobian};
#ifdef BRIDGESTAN_AD_HESSIAN
    stan::math::hessian_times_vector(f, x, vv, val, out);
#else
    if (n == 0 || vv.norm() == 0.0) {
      // the automatic step size divides by |v|; H * 0 = 0 exactly
      val = f(x);
      out = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(n));
    } else {
      stan::math::internal::finite_diff_hessian_times_vector_auto(f, x, vv, val, out);
    }
#endif
    *lp = val;
    copy_out(out, hvp, n);
  });
}

BS_PUBLIC bs_rng* bs_rng_construct(unsigned int seed, char** error_msg) {
  bs_rng* result = nullptr;
  guarded("rng_construct", error_msg, [&]() { result = new bs_rng(seed); });
  return result;
}

BS_PUBLIC void bs_rng_destruct(bs_rng* rng) { delete rng; }

}  // extern "C"
