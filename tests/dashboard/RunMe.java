// A minimal Flink job for `flink run`: Rheo must refuse the JobGraph its main submits, saying
// what to do instead.
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

public class RunMe {
    public static void main(String[] args) throws Exception {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.fromData(1, 2, 3).print();
        env.execute("run-me");
    }
}
