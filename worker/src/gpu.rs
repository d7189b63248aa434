//! WebGPU: discover the adapter, run our WGSL kernels through `wgpu`, and
//! decide whether the GPU path may be used.
//!
//! `wgpu`'s browser backend exposes only the adapter description, so the
//! adapter's vendor, architecture and fallback flag are read from
//! `navigator.gpu` directly; all computation goes through `wgpu`.

use js_sys::{Promise, Reflect};
use sepsis_core::compute::{
    max_abs_diff, AdapterSummary, BackendKind, BackendReport, GpuLimits, KernelCheck, LinearProblem, PARITY_TOLERANCE,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wgpu::util::DeviceExt;

/// Probe WebGPU and choose the backend: WebGPU only when an adapter exists,
/// a device opens, and the linear kernel matches candle on the CPU.
pub async fn choose_backend() -> BackendReport {
    let adapter = match describe_adapter().await {
        Ok(Some(adapter)) => adapter,
        Ok(None) => return BackendReport::cpu("WebGPU offered no adapter (disabled by the browser or its policy)"),
        Err(reason) => return BackendReport::cpu(reason),
    };
    let check = match GpuContext::new().await {
        Ok(gpu) => gpu.linear_parity_check().await,
        Err(reason) => {
            return BackendReport { reason: format!("WebGPU device failed: {reason}"), adapter: Some(adapter), ..BackendReport::cpu("") }
        }
    };
    match check {
        Ok(check) if check.passed => BackendReport {
            chosen: BackendKind::WebGpu,
            reason: format!("adapter found and the WGSL kernel matches the CPU within {:e}", check.tolerance),
            adapter: Some(adapter),
            kernel_check: Some(check),
        },
        Ok(check) => BackendReport {
            reason: format!("the WGSL kernel differs from the CPU by {:e} (> {:e})", check.max_abs_diff, check.tolerance),
            adapter: Some(adapter),
            kernel_check: Some(check),
            ..BackendReport::cpu("")
        },
        Err(reason) => BackendReport { reason: format!("WebGPU kernel failed: {reason}"), adapter: Some(adapter), ..BackendReport::cpu("") },
    }
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn get_string(object: &JsValue, key: &str) -> String {
    get(object, key).as_string().unwrap_or_default()
}

fn get_u64(object: &JsValue, key: &str) -> u64 {
    get(object, key).as_f64().unwrap_or(0.0) as u64
}

/// `navigator.gpu.requestAdapter()` and what it tells about itself.
/// `Err` when WebGPU is absent, `Ok(None)` when it offers no adapter.
pub async fn describe_adapter() -> Result<Option<AdapterSummary>, String> {
    let navigator = get(&js_sys::global(), "navigator");
    let gpu = get(&navigator, "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return Err("navigator.gpu is not available (this browser has WebGPU off or unsupported)".into());
    }
    let request = get(&gpu, "requestAdapter").dyn_into::<js_sys::Function>().map_err(|_| "navigator.gpu.requestAdapter is missing")?;
    let promise: Promise = request.call0(&gpu).map_err(js_message)?.unchecked_into();
    let adapter = JsFuture::from(promise).await.map_err(js_message)?;
    if adapter.is_null() || adapter.is_undefined() {
        return Ok(None);
    }
    let info = get(&adapter, "info");
    // Newer browsers report the fallback flag on `info`, older ones on the adapter.
    let is_fallback = get(&info, "isFallbackAdapter").as_bool().or_else(|| get(&adapter, "isFallbackAdapter").as_bool()).unwrap_or(false);
    let features = get(&adapter, "features");
    let shader_f16 = get(&features, "has")
        .dyn_into::<js_sys::Function>()
        .ok()
        .and_then(|has| has.call1(&features, &JsValue::from_str("shader-f16")).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let limits = get(&adapter, "limits");
    Ok(Some(AdapterSummary {
        vendor: get_string(&info, "vendor"),
        architecture: get_string(&info, "architecture"),
        device: get_string(&info, "device"),
        description: get_string(&info, "description"),
        is_fallback,
        shader_f16,
        limits: GpuLimits {
            max_buffer_size: get_u64(&limits, "maxBufferSize"),
            max_storage_buffer_binding_size: get_u64(&limits, "maxStorageBufferBindingSize"),
            max_storage_buffers_per_shader_stage: get_u64(&limits, "maxStorageBuffersPerShaderStage") as u32,
            max_compute_invocations_per_workgroup: get_u64(&limits, "maxComputeInvocationsPerWorkgroup") as u32,
            max_compute_workgroup_size_x: get_u64(&limits, "maxComputeWorkgroupSizeX") as u32,
            max_compute_workgroup_storage_size: get_u64(&limits, "maxComputeWorkgroupStorageSize") as u32,
        },
    }))
}

fn js_message(value: JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// An open WebGPU device with our compiled kernels.
pub struct GpuContext {
    /// What `wgpu` reports of the adapter (natively: name, driver, type).
    pub adapter_info: wgpu::AdapterInfo,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) linear: wgpu::ComputePipeline,
    pub(crate) gru_cell: wgpu::ComputePipeline,
    pub(crate) sample: wgpu::ComputePipeline,
}

const LINEAR_WGSL: &str = include_str!("kernels/linear.wgsl");
const GRU_CELL_WGSL: &str = include_str!("kernels/gru_cell.wgsl");
const SAMPLE_WGSL: &str = include_str!("kernels/sample.wgsl");
/// The element-wise kernels (GRU cell, draws) use 64 invocations per
/// workgroup (WebGPU guarantees 256).
pub(crate) const WORKGROUP: u32 = 64;
/// `linear.wgsl` computes 16 x 16 output tiles (256 invocations).
const LINEAR_TILE: u32 = 16;

/// Workgroups for `linear.wgsl`: output tiles x row tiles x members.
pub(crate) fn linear_workgroups(rows: usize, outputs: usize, members: usize) -> [u32; 3] {
    [(outputs as u32).div_ceil(LINEAR_TILE), (rows as u32).div_ceil(LINEAR_TILE), members as u32]
}

impl GpuContext {
    /// Open the browser's WebGPU in the worker. Natively (the GPU benchmark,
    /// `benches/gpu_simulate.rs`) the only backend compiled in is Vulkan, so
    /// the same kernels run on a real GPU without a browser.
    pub async fn new() -> Result<Self, String> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = wgpu::Backends::BROWSER_WEBGPU | wgpu::Backends::VULKAN;
        let instance = wgpu::Instance::new(descriptor);
        let adapter =
            instance.request_adapter(&wgpu::RequestAdapterOptions::default()).await.map_err(|e| format!("no adapter: {e}"))?;
        let adapter_info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor { label: Some("sepsis"), ..Default::default() })
            .await
            .map_err(|e| format!("no device: {e}"))?;
        let pipeline = |label: &str, source: &str| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let (linear, gru_cell, sample) =
            (pipeline("linear.wgsl", LINEAR_WGSL), pipeline("gru_cell.wgsl", GRU_CELL_WGSL), pipeline("sample.wgsl", SAMPLE_WGSL));
        Ok(Self { adapter_info, device, queue, linear, gru_cell, sample })
    }

    /// `y = x Wᵀ + b` on the GPU.
    pub async fn linear(&self, p: &LinearProblem) -> Result<Vec<f32>, String> {
        let storage = |label: &str, data: &[f32]| {
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let dims = [p.batch as u32, p.inputs as u32, p.outputs as u32, 0];
        let dims = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("dims"),
            contents: bytemuck::cast_slice(&dims),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let (x, w, b) = (storage("x", &p.x), storage("w", &p.w), storage("b", &p.b));
        let out_bytes = (p.batch * p.outputs * std::mem::size_of::<f32>()) as u64;
        let y = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("y"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("linear"),
            layout: &self.linear.get_bind_group_layout(0),
            entries: &[&dims, &x, &w, &b, &y]
                .iter()
                .enumerate()
                .map(|(i, buffer)| wgpu::BindGroupEntry { binding: i as u32, resource: buffer.as_entire_binding() })
                .collect::<Vec<_>>(),
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("linear") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("linear"), timestamp_writes: None });
            pass.set_pipeline(&self.linear);
            pass.set_bind_group(0, &bind_group, &[]);
            let [x, y, z] = linear_workgroups(p.batch, p.outputs, 1);
            pass.dispatch_workgroups(x, y, z);
        }
        encoder.copy_buffer_to_buffer(&y, 0, &readback, 0, out_bytes);
        self.queue.submit([encoder.finish()]);
        read_buffer(&self.device, &readback).await
    }

    /// Run the fixed probe problem on the GPU and with candle on the CPU.
    pub async fn linear_parity_check(&self) -> Result<KernelCheck, String> {
        let problem = LinearProblem::probe();
        let gpu = self.linear(&problem).await?;
        let cpu = problem.reference().map_err(|e| format!("candle reference failed: {e}"))?;
        let diff = max_abs_diff(&gpu, &cpu);
        Ok(KernelCheck {
            kernel: "linear.wgsl".into(),
            elements: cpu.len(),
            max_abs_diff: diff,
            tolerance: PARITY_TOLERANCE,
            passed: diff <= PARITY_TOLERANCE,
        })
    }
}

/// Map a MAP_READ buffer and copy it out as f32. On the web, mapping
/// completes from the event loop, so await a oneshot channel; natively it
/// completes inside `poll`, which on the web does nothing.
pub(crate) async fn read_buffer(device: &wgpu::Device, buffer: &wgpu::Buffer) -> Result<Vec<f32>, String> {
    let (sender, receiver) = futures_channel::oneshot::channel();
    buffer.map_async(wgpu::MapMode::Read, .., move |result| {
        let _ = sender.send(result);
    });
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| format!("waiting for the GPU failed: {e}"))?;
    receiver.await.map_err(|_| "buffer mapping was cancelled".to_string())?.map_err(|e| format!("buffer mapping failed: {e}"))?;
    let values = {
        let view = buffer.get_mapped_range(..).map_err(|e| format!("mapped range: {e:?}"))?;
        bytemuck::cast_slice::<u8, f32>(&view).to_vec()
    };
    buffer.unmap();
    Ok(values)
}

