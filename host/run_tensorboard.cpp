#include "host/run_tensorboard.h"

#include <cmath>

void RunTensorBoard::train(const TrainStepRecord& record) {
    const int64_t step = record.step;
    writer_.scalar("train/loss", step, record.loss);
    writer_.scalar("train/perplexity", step, std::exp(record.loss));
    writer_.scalar("train/lr", step, record.lr);
    writer_.scalar("train/grad_norm", step, record.grad_norm);
    writer_.scalar("train/tokens_seen", step, static_cast<double>(record.tokens_seen));
    if (record.loss_scale) writer_.scalar("train/loss_scale", step, *record.loss_scale);
    writer_.scalar("perf/tokens_per_s", step, record.tokens_per_s);
    writer_.scalar("perf/step_ms", step, record.ms);
    if (record.mfu) writer_.scalar("perf/mfu", step, *record.mfu);
    writer_.scalar("perf/memory_gb", step, record.mem_gb);
    writer_.flush();
}

void RunTensorBoard::split_loss(const std::string& split, int64_t step, double loss) {
    writer_.scalar(split + "/loss", step, loss);
    writer_.scalar(split + "/perplexity", step, std::exp(loss));
    writer_.flush();
}

void RunTensorBoard::hellaswag(int64_t step, double acc, double acc_norm) {
    writer_.scalar("hellaswag/acc", step, acc);
    writer_.scalar("hellaswag/acc_norm", step, acc_norm);
    writer_.flush();
}

void RunTensorBoard::norms(const NormReport& report) {
    const int64_t step = report.step;
    writer_.scalar("norms/weight_l1", step, report.weight_l1);
    writer_.scalar("norms/weight_l2", step, report.weight_l2);
    writer_.scalar("norms/grad_l1", step, report.grad_l1);
    writer_.scalar("norms/grad_l2", step, report.grad_l2);
    for (const TensorNorms& tensor : report.tensors) {
        const std::string prefix = "norms/" + tensor.name + "/";
        writer_.scalar(prefix + "weight_max", step, tensor.weight_max);
        writer_.scalar(prefix + "weight_mean", step, tensor.weight_mean);
        writer_.scalar(prefix + "grad_max", step, tensor.grad_max);
        writer_.scalar(prefix + "grad_mean", step, tensor.grad_mean);
    }
    writer_.flush();
}
