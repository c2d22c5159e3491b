"""Command lines shared by several tests."""

# ms-swift README quick start (format with model= and data=).
MS_SWIFT_README = (
    "--model {model} --tuner_type lora --dataset {data}#500 --torch_dtype bfloat16 --num_train_epochs 1 "
    "--per_device_train_batch_size 1 --per_device_eval_batch_size 1 --learning_rate 1e-4 --lora_rank 8 "
    "--lora_alpha 32 --target_modules all-linear --gradient_accumulation_steps 16 --eval_steps 50 --save_steps 50 "
    "--save_total_limit 2 --logging_steps 5 --max_length 2048 --output_dir output --warmup_ratio 0.05 "
    "--dataloader_num_workers 4 --model_author swift --model_name swift-robot"
)
