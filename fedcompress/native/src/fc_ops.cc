// fedcompress's native TensorFlow kernels: codec loops that TensorFlow's graph ops can
// only express as many small vectorized ops per step (see fedcompress/native/__init__.py).
//
// Every op here has a pure-TensorFlow twin in fedcompress/codecs/stages that computes
// the same bits; tests/native compares the two.
//
// This file is compiled twice (fedcompress/native/build.py):
//  * for Python, linked against the TensorFlow wheel's libtensorflow_framework, where a
//    static initializer registers the ops when tf.load_op_library opens it;
//  * for TFF's worker_binary, which links TensorFlow statically and exports none of its
//    functions: the TensorFlow functions called here are resolved to the worker's own
//    copies by trampolines (build.py), and the registration runs just before the
//    worker's main() (worker_hook.c), after its static initializers. That build must
//    not reference TensorFlow's data symbols (vtables, type_info, globals), which no
//    trampoline can stand in for: hence no REGISTER_KERNEL_BUILDER (its factory's vtable
//    lives in TensorFlow), "CPU" instead of DEVICE_CPU, and -fno-rtti there.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tf = tensorflow;

namespace {

// Reads a stream of 32-bit words, bit 0 the most significant bit of word 0, from a bit
// position: the next bits are the top `avail` (> 32 after each refill) bits of `buf`.
class BitReader {
 public:
  BitReader(const uint32_t* words, int64_t num_words, int64_t pos)
      : words_(words), num_words_(num_words), next_(pos / 32 + 2) {
    const int64_t w = pos / 32;
    buf_ = ((word(w) << 32) | word(w + 1)) << (pos % 32);
    avail_ = 64 - int(pos % 32);
  }
  uint64_t peek(int bits) const { return buf_ >> (64 - bits); }
  int64_t position() const { return next_ * 32 - avail_; }  // Of the next bit.
  void skip(int bits) {
    buf_ <<= bits;
    avail_ -= bits;
    if (avail_ <= 32) {
      buf_ |= word(next_++) << (32 - avail_);
      avail_ += 32;
    }
  }

 private:
  uint64_t word(int64_t i) const { return i < num_words_ ? words_[i] : 0; }
  const uint32_t* words_;
  int64_t num_words_;
  int64_t next_;
  uint64_t buf_;
  int avail_;
};

// Canonical Huffman decoding of the blocks of fedcompress/codecs/stages/huffman.py's
// streams: block b's symbols start at bit block_pos[b]; a code is found from the next
// L = max_code_length bits, `window`, as the last code whose left-aligned start is
// <= window. For L <= 16, by a table over every window (entry: symbol << 8 | length),
// four blocks at a time: their decoders are independent chains of shifts and loads,
// which one core runs side by side (one block at a time took ~3 times as long).
class HuffmanDecodeBlocksOp : public tf::OpKernel {
 public:
  explicit HuffmanDecodeBlocksOp(tf::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("block_size", &block_size_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_code_length", &max_code_length_));
    OP_REQUIRES(ctx, block_size_ >= 1 && max_code_length_ >= 1 && max_code_length_ <= 24,
                tf::errors::InvalidArgument("block_size >= 1 and 1 <= max_code_length <= 24"));
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& words_t = ctx->input(0);
    const tf::Tensor& pos_t = ctx->input(1);
    const tf::Tensor& symbols_t = ctx->input(2);
    const tf::Tensor& lengths_t = ctx->input(3);
    const tf::Tensor& starts_t = ctx->input(4);
    const tf::Tensor& n_t = ctx->input(5);
    OP_REQUIRES(ctx, n_t.NumElements() == 1,
                tf::errors::InvalidArgument("n must be a scalar"));
    const int64_t n = n_t.flat<int64_t>()(0);
    const int64_t num_blocks = pos_t.NumElements();
    const int64_t codes = symbols_t.NumElements();
    OP_REQUIRES(ctx, n >= 0 && num_blocks == (n + block_size_ - 1) / block_size_,
                tf::errors::InvalidArgument("one position per block of the n symbols"));
    OP_REQUIRES(ctx, codes >= 1 && lengths_t.NumElements() == codes &&
                         starts_t.NumElements() == codes,
                tf::errors::InvalidArgument("one length and start per code"));
    const int L = max_code_length_;
    const auto lengths = lengths_t.flat<int64_t>();
    const auto starts = starts_t.flat<int64_t>();
    const auto symbols = symbols_t.flat<int32_t>();
    for (int64_t i = 0; i < codes; ++i) {
      OP_REQUIRES(ctx, lengths(i) >= 1 && lengths(i) <= L && starts(i) >= 0 &&
                           starts(i) < (int64_t{1} << L) &&
                           (i == 0 || starts(i) > starts(i - 1)),
                  tf::errors::InvalidArgument("code lengths in 1..L, starts increasing"));
    }
    OP_REQUIRES(ctx, starts(0) == 0, tf::errors::InvalidArgument("the first code starts at 0"));
    const auto pos = pos_t.flat<int64_t>();
    for (int64_t b = 0; b < num_blocks; ++b) {
      OP_REQUIRES(ctx, pos(b) >= 0, tf::errors::InvalidArgument("negative block position"));
    }
    tf::Tensor* out_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tf::TensorShape({n}), &out_t));
    int32_t* out = out_t->flat<int32_t>().data();
    const uint32_t* words = reinterpret_cast<const uint32_t*>(words_t.flat<int32_t>().data());
    const int64_t num_words = words_t.NumElements();
    auto reader = [&](int64_t b) { return BitReader(words, num_words, pos(b)); };
    // A block that read past the stream's last word: the stream was cut (the graph
    // decoder's gathers fail there too).
    bool cut = false;
    auto ended = [&](const BitReader& r) { cut |= r.position() > 32 * num_words; };
    auto count = [&](int64_t b) { return std::min<int64_t>(block_size_, n - b * block_size_); };

    if (L > 16) {  // A table over 2**L windows would outgrow the caches: search the starts.
      const int64_t* begin = starts.data();
      for (int64_t b = 0; b < num_blocks; ++b) {
        BitReader r = reader(b);
        int32_t* o = out + b * block_size_;
        for (int64_t k = 0; k < count(b); ++k) {
          const int64_t i = std::upper_bound(begin, begin + codes, int64_t(r.peek(L))) - begin - 1;
          o[k] = symbols(i);
          r.skip(int(lengths(i)));
        }
        ended(r);
      }
      OP_REQUIRES(ctx, !cut, tf::errors::InvalidArgument("the stream ends before its symbols"));
      return;
    }
    std::vector<uint32_t> table(size_t{1} << L);
    for (int64_t i = 0; i < codes; ++i) {
      const int64_t end = i + 1 < codes ? starts(i + 1) : (int64_t{1} << L);
      std::fill(table.begin() + starts(i), table.begin() + end,
                (uint32_t(symbols(i)) << 8) | uint32_t(lengths(i)));
    }
    const uint32_t* t = table.data();
    int64_t b = 0;
    for (; b + 4 <= num_blocks && count(b + 3) == block_size_; b += 4) {
      BitReader r0 = reader(b), r1 = reader(b + 1), r2 = reader(b + 2), r3 = reader(b + 3);
      int32_t* o = out + b * block_size_;
      const int64_t m = block_size_;
      for (int64_t k = 0; k < m; ++k) {
        const uint32_t e0 = t[r0.peek(L)], e1 = t[r1.peek(L)], e2 = t[r2.peek(L)],
                       e3 = t[r3.peek(L)];
        o[k] = int32_t(e0 >> 8);
        o[m + k] = int32_t(e1 >> 8);
        o[2 * m + k] = int32_t(e2 >> 8);
        o[3 * m + k] = int32_t(e3 >> 8);
        r0.skip(int(e0 & 0xFF));
        r1.skip(int(e1 & 0xFF));
        r2.skip(int(e2 & 0xFF));
        r3.skip(int(e3 & 0xFF));
      }
      ended(r0);
      ended(r1);
      ended(r2);
      ended(r3);
    }
    for (; b < num_blocks; ++b) {
      BitReader r = reader(b);
      int32_t* o = out + b * block_size_;
      for (int64_t k = 0; k < count(b); ++k) {
        const uint32_t e = t[r.peek(L)];
        o[k] = int32_t(e >> 8);
        r.skip(int(e & 0xFF));
      }
      ended(r);
    }
    OP_REQUIRES(ctx, !cut, tf::errors::InvalidArgument("the stream ends before its symbols"));
  }

 private:
  int block_size_;
  int max_code_length_;
};

// Appends fields of up to 32 bits, most significant bit first, to 32-bit words.
class BitWriter {
 public:
  explicit BitWriter(uint32_t* words) : words_(words) {}
  void put(uint64_t value, int width) {  // 0 <= width <= 32
    if (width == 0) return;
    buf_ = (buf_ << width) | (value & ((uint64_t{1} << width) - 1));
    used_ += width;
    if (used_ >= 32) {
      used_ -= 32;
      *words_++ = uint32_t(buf_ >> used_);
    }
  }
  void finish() {  // The last word, zero-padded.
    if (used_ > 0) *words_++ = uint32_t(buf_ << (32 - used_));
  }

 private:
  uint32_t* words_;
  uint64_t buf_ = 0;
  int used_ = 0;
};

// The stream of fedcompress/codecs/stages/huffman.py's huffman_encode from its parts:
// the side fields (header and code lengths), each block's payload bits but the last's
// at `block_width` bits each, then every symbol's code, `widths[symbol]` bits of
// `codes[symbol]`. The same words as bitio.write_field_runs writes.
class HuffmanEncodeOp : public tf::OpKernel {
 public:
  explicit HuffmanEncodeOp(tf::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("block_size", &block_size_));
    OP_REQUIRES(ctx, block_size_ >= 1, tf::errors::InvalidArgument("block_size >= 1"));
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& symbols_t = ctx->input(0);
    const tf::Tensor& codes_t = ctx->input(1);
    const tf::Tensor& widths_t = ctx->input(2);
    const tf::Tensor& side_values_t = ctx->input(3);
    const tf::Tensor& side_widths_t = ctx->input(4);
    const tf::Tensor& block_width_t = ctx->input(5);
    const int64_t n = symbols_t.NumElements();
    const int64_t alphabet = codes_t.NumElements();
    const int64_t num_side = side_values_t.NumElements();
    OP_REQUIRES(ctx, widths_t.NumElements() == alphabet && alphabet >= 1,
                tf::errors::InvalidArgument("one code and width per symbol"));
    OP_REQUIRES(ctx, side_widths_t.NumElements() == num_side,
                tf::errors::InvalidArgument("one width per side field"));
    OP_REQUIRES(ctx, block_width_t.NumElements() == 1,
                tf::errors::InvalidArgument("block_width must be a scalar"));
    const int64_t block_width = block_width_t.flat<int64_t>()(0);
    const int32_t* symbols = symbols_t.flat<int32_t>().data();
    const int64_t* codes = codes_t.flat<int64_t>().data();
    const int64_t* widths = widths_t.flat<int64_t>().data();
    const int64_t* side_values = side_values_t.flat<int64_t>().data();
    const int64_t* side_widths = side_widths_t.flat<int64_t>().data();
    OP_REQUIRES(ctx, block_width >= 0 && block_width <= 32,
                tf::errors::InvalidArgument("block_width in 0..32"));
    for (int64_t i = 0; i < alphabet; ++i) {
      OP_REQUIRES(ctx, widths[i] >= 0 && widths[i] <= 32,
                  tf::errors::InvalidArgument("code widths in 0..32"));
    }
    int64_t total = 0;
    for (int64_t i = 0; i < num_side; ++i) {
      OP_REQUIRES(ctx, side_widths[i] >= 0 && side_widths[i] <= 32,
                  tf::errors::InvalidArgument("side field widths in 0..32"));
      total += side_widths[i];
    }
    const int64_t num_blocks = (n + block_size_ - 1) / block_size_;
    std::vector<int64_t> block_bits(num_blocks, 0);
    for (int64_t b = 0; b < num_blocks; ++b) {
      const int64_t end = std::min<int64_t>(n, (b + 1) * block_size_);
      int64_t bits = 0;
      for (int64_t k = b * block_size_; k < end; ++k) {
        const int32_t symbol = symbols[k];
        OP_REQUIRES(ctx, symbol >= 0 && symbol < alphabet,
                    tf::errors::InvalidArgument("a symbol outside the alphabet"));
        bits += widths[symbol];
      }
      block_bits[b] = bits;
      total += bits;
    }
    if (num_blocks > 1) total += (num_blocks - 1) * block_width;
    tf::Tensor* out_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tf::TensorShape({(total + 31) / 32}), &out_t));
    BitWriter writer(reinterpret_cast<uint32_t*>(out_t->flat<int32_t>().data()));
    for (int64_t i = 0; i < num_side; ++i) writer.put(uint64_t(side_values[i]), int(side_widths[i]));
    for (int64_t b = 0; b + 1 < num_blocks; ++b) writer.put(uint64_t(block_bits[b]), int(block_width));
    for (int64_t k = 0; k < n; ++k) {
      const int32_t symbol = symbols[k];
      writer.put(uint64_t(codes[symbol]), int(widths[symbol]));
    }
    writer.finish();
  }

 private:
  int block_size_;
};

// tensor_encoding's 28-bit packing of 8-bit values, as fedcompress/codecs/stages/
// bitpack28.py's graph ops write it: each group of seven values, least significant
// byte first, is 56 bits; its low 28 bits are one word and its high 28 the next.
// Values are integers in [0, 255] of type T (what the quantizers give), cast to uint8 as
// tf.cast does them; out-of-range values and NaN, which tf.cast itself casts differently
// by vector and by element in float16 and bfloat16, may give other words here.
template <typename T>
class Pack8In28Op : public tf::OpKernel {
 public:
  explicit Pack8In28Op(tf::OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& values_t = ctx->input(0);
    const int64_t n = values_t.NumElements();
    const int64_t num_words = (n * 8 + 27) / 28;
    tf::Tensor* out_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tf::TensorShape({num_words, 1}), &out_t));
    const T* values = values_t.flat<T>().data();
    uint32_t* words = reinterpret_cast<uint32_t*>(out_t->flat<int32_t>().data());
    const int64_t full = n / 7;
    for (int64_t g = 0; g < full; ++g) {
      const T* v = values + 7 * g;
      uint64_t joined = 0;
      for (int k = 0; k < 7; ++k) joined |= uint64_t(static_cast<uint8_t>(v[k])) << (8 * k);
      words[2 * g] = uint32_t(joined & 0xFFFFFFF);
      words[2 * g + 1] = uint32_t(joined >> 28);
    }
    if (full * 2 < num_words) {  // The last group, zero-padded: one or two words of it.
      uint64_t joined = 0;
      for (int64_t k = 0; 7 * full + k < n; ++k) {
        joined |= uint64_t(static_cast<uint8_t>(values[7 * full + k])) << (8 * k);
      }
      words[2 * full] = uint32_t(joined & 0xFFFFFFF);
      if (2 * full + 1 < num_words) words[2 * full + 1] = uint32_t(joined >> 28);
    }
  }
};

// The inverse: the first `num_values` bytes of the words' groups, as T.
template <typename T>
class Unpack8From28Op : public tf::OpKernel {
 public:
  explicit Unpack8From28Op(tf::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_values", &num_values_));
    OP_REQUIRES(ctx, num_values_ >= 0, tf::errors::InvalidArgument("num_values >= 0"));
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& words_t = ctx->input(0);
    const int64_t num_words = words_t.NumElements();
    const int64_t n = num_values_;
    OP_REQUIRES(ctx, (num_words + 1) / 2 * 7 >= n,
                tf::errors::InvalidArgument("fewer words than num_values need"));
    tf::Tensor* out_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tf::TensorShape({n}), &out_t));
    const uint32_t* words = reinterpret_cast<const uint32_t*>(words_t.flat<int32_t>().data());
    T* out = out_t->flat<T>().data();
    auto joined_at = [&](int64_t g) {
      const uint64_t w0 = words[2 * g];
      const uint64_t w1 = 2 * g + 1 < num_words ? words[2 * g + 1] : 0;
      return w0 | (w1 << 28);
    };
    const int64_t full = n / 7;
    for (int64_t g = 0; g < full; ++g) {
      const uint64_t joined = joined_at(g);
      T* o = out + 7 * g;
      for (int k = 0; k < 7; ++k) o[k] = static_cast<T>(uint8_t(joined >> (8 * k)));
    }
    if (7 * full < n) {
      const uint64_t joined = joined_at(full);
      for (int64_t k = 0; 7 * full + k < n; ++k) {
        out[7 * full + k] = static_cast<T>(uint8_t(joined >> (8 * k)));
      }
    }
  }

 private:
  int64_t num_values_;
};

// out[i] = #{j : b[j] < v[i]}, by chunks of the values that stay in the L1 cache, one
// entry at a time over the chunk: compares the compiler vectorizes, in the widest
// vectors this CPU has (the clones; SSE2 alone took 5 ms for the CNN's 1.6M-value
// kernel at 15 entries, AVX2 2.1, AVX-512 1.5).
template <typename T>
__attribute__((target_clones("avx512f", "avx2", "default")))
void CountBelow(const T* b, int64_t m, const T* v, int64_t n, float* out) {
  constexpr int64_t kChunk = 1024;
  int32_t count[kChunk];
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t size = std::min(kChunk, n - start);
    const T* x = v + start;
    for (int64_t i = 0; i < size; ++i) count[i] = 0;
    for (int64_t j = 0; j < m; ++j) {
      const T bound = b[j];
      for (int64_t i = 0; i < size; ++i) count[i] += bound < x[i] ? 1 : 0;
    }
    for (int64_t i = 0; i < size; ++i) out[start + i] = float(count[i]);
  }
}

// tf.searchsorted(sorted, values, side="left") as float32: for each value the index of
// the first of `sorted` not below it, std::lower_bound's answer as TensorFlow's kernel
// gives it. Where `sorted` is ascending without NaN, `sorted[i] < value` is true then
// false along i, so any search finds that index: a count of the entries below the value
// for a few (nonuniform's levels at up to 5 bits), else a binary search without branches
// (8 ns a value at 255 entries, which nonuniform's tables beat on large tensors).
template <typename T>
class SearchSortedLeftOp : public tf::OpKernel {
 public:
  explicit SearchSortedLeftOp(tf::OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& sorted_t = ctx->input(0);
    const tf::Tensor& values_t = ctx->input(1);
    OP_REQUIRES(ctx, sorted_t.dims() == 1 && values_t.dims() == 1,
                tf::errors::InvalidArgument("sorted and values must be vectors"));
    const int64_t m = sorted_t.NumElements();
    const int64_t n = values_t.NumElements();
    tf::Tensor* out_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tf::TensorShape({n}), &out_t));
    const T* b = sorted_t.flat<T>().data();
    const T* v = values_t.flat<T>().data();
    float* out = out_t->flat<float>().data();
    bool ascending = true;
    for (int64_t i = 0; i < m; ++i) {
      if (b[i] != b[i] || (i > 0 && b[i] < b[i - 1])) ascending = false;
    }
    if (!ascending) {
      for (int64_t i = 0; i < n; ++i) out[i] = float(std::lower_bound(b, b + m, v[i]) - b);
    } else if (m <= 32) {
      CountBelow(b, m, v, n, out);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const T x = v[i];
        const T* first = b;
        int64_t len = m;
        while (len > 1) {  // first[0..len) holds the answer's index or it is first + len.
          const int64_t half = len / 2;
          first += (first[half - 1] < x) * half;  // A product, not a branch: 3x faster.
          len -= half;
        }
        out[i] = float((first - b) + (first[0] < x));
      }
    }
  }
};

template <class Kernel>
class Factory : public tf::kernel_factory::OpKernelFactory {
 public:
  tf::OpKernel* Create(tf::OpKernelConstruction* ctx) override { return new Kernel(ctx); }
};

// `dtype`, when given, is the kernel's type attribute "T".
template <class Kernel>
void RegisterCpuKernel(const char* op, const char* kernel_class,
                       tf::DataType dtype = tf::DT_INVALID) {
  tf::register_kernel::Name builder(op);
  builder.Device("CPU");
  if (dtype != tf::DT_INVALID) builder.TypeConstraint("T", dtype);
  // Never destroyed: the registry keeps the kernel definition.
  new tf::kernel_factory::OpKernelRegistrar(
      builder.Build(), kernel_class,
      std::unique_ptr<tf::kernel_factory::OpKernelFactory>(new Factory<Kernel>()));
}

// One kernel per value type: the float types a codec's values come in.
template <template <typename> class Kernel>
void RegisterFloatKernels(const char* op, const char* kernel_class) {
  RegisterCpuKernel<Kernel<float>>(op, kernel_class, tf::DT_FLOAT);
  RegisterCpuKernel<Kernel<double>>(op, kernel_class, tf::DT_DOUBLE);
  RegisterCpuKernel<Kernel<Eigen::half>>(op, kernel_class, tf::DT_HALF);
  RegisterCpuKernel<Kernel<tf::bfloat16>>(op, kernel_class, tf::DT_BFLOAT16);
}

}  // namespace

extern "C" void fedcompress_register_ops() {
  tf::register_op::OpDefBuilderWrapper("FedcompressHuffmanDecodeBlocks")
      .Input("words: int32")
      .Input("block_pos: int64")
      .Input("code_symbols: int32")
      .Input("code_lengths: int64")
      .Input("code_starts: int64")
      .Input("n: int64")
      .Output("symbols: int32")
      .Attr("block_size: int")
      .Attr("max_code_length: int")
      .SetShapeFn([](tf::shape_inference::InferenceContext* c) {
        c->set_output(0, c->Vector(c->UnknownDim()));
        return tf::OkStatus();
      })();
  RegisterCpuKernel<HuffmanDecodeBlocksOp>("FedcompressHuffmanDecodeBlocks",
                                           "HuffmanDecodeBlocksOp");
  tf::register_op::OpDefBuilderWrapper("FedcompressHuffmanEncode")
      .Input("symbols: int32")
      .Input("codes: int64")
      .Input("widths: int64")
      .Input("side_values: int64")
      .Input("side_widths: int64")
      .Input("block_width: int64")
      .Output("stream: int32")
      .Attr("block_size: int")
      .SetShapeFn([](tf::shape_inference::InferenceContext* c) {
        c->set_output(0, c->Vector(c->UnknownDim()));
        return tf::OkStatus();
      })();
  RegisterCpuKernel<HuffmanEncodeOp>("FedcompressHuffmanEncode", "HuffmanEncodeOp");
  tf::register_op::OpDefBuilderWrapper("FedcompressPack8In28")
      .Input("values: T")
      .Output("words: int32")
      .Attr("T: {float, double, half, bfloat16}")
      .SetShapeFn([](tf::shape_inference::InferenceContext* c) {
        const int64_t n = c->Value(c->NumElements(c->input(0)));
        c->set_output(0, c->Matrix(n < 0 ? c->UnknownDim() : c->MakeDim((n * 8 + 27) / 28), 1));
        return tf::OkStatus();
      })();
  RegisterFloatKernels<Pack8In28Op>("FedcompressPack8In28", "Pack8In28Op");
  tf::register_op::OpDefBuilderWrapper("FedcompressUnpack8From28")
      .Input("words: int32")
      .Output("values: T")
      .Attr("T: {float, double, half, bfloat16}")
      .Attr("num_values: int >= 0")
      .SetShapeFn([](tf::shape_inference::InferenceContext* c) {
        int64_t n;
        TF_RETURN_IF_ERROR(c->GetAttr("num_values", &n));
        c->set_output(0, c->Vector(n));
        return tf::OkStatus();
      })();
  RegisterFloatKernels<Unpack8From28Op>("FedcompressUnpack8From28", "Unpack8From28Op");
  tf::register_op::OpDefBuilderWrapper("FedcompressSearchSortedLeft")
      .Input("sorted: T")
      .Input("values: T")
      .Output("indices: float")
      .Attr("T: {float, double}")
      .SetShapeFn([](tf::shape_inference::InferenceContext* c) {
        c->set_output(0, c->input(1));
        return tf::OkStatus();
      })();
  RegisterCpuKernel<SearchSortedLeftOp<float>>("FedcompressSearchSortedLeft",
                                               "SearchSortedLeftOp", tf::DT_FLOAT);
  RegisterCpuKernel<SearchSortedLeftOp<double>>("FedcompressSearchSortedLeft",
                                                "SearchSortedLeftOp", tf::DT_DOUBLE);
}

#ifdef FEDCOMPRESS_FOR_PYTHON
namespace {
// tf.load_op_library opens this build: register then.
const bool registered = (fedcompress_register_ops(), true);
}  // namespace
#endif
